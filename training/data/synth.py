"""Synthetic stage-1 samples with exact labels: a random person (pose from a pose source,
shape, face, look), a random full-frame camera, rendered straight into the regressor's 256x192
crop with the CLIFF bookkeeping the regressor uses (full-frame focal and principal point, the
crop's centre and height in the frame), so every label is exact: all parameters, the joints in
the camera frame, every keypoint set in normalized crop units with a z-buffer visibility flag,
and the person's alpha (from coverage, 2x2 supersampled).

Sample ``index`` of a (seed, split) is drawn from its own generator, seeded by
(seed, split, index): the same sample whatever the worker count or order.

The regressor predicts no translation, so ``transl`` stays zero (the model's root at its
origin) and the camera translation ``cam_t`` carries the placement: a camera-frame point is
``MODEL_TO_CAMERA @ x_model + cam_t``. The camera's yaw, pitch and roll are folded into
``global_orient`` (the regressor's camera never rotates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from backend.body.asset import Asset
from backend.body.model import BodyModel, BodyOutput
from backend.camera import project, to_camera
from backend.errors import InputError
from backend.regressor.crop_camera import crop_box, crop_intrinsics, full_to_crop
from backend.regressor.vit import INPUT_SIZE
from backend.renderer import mesh_raster

from ..forward import JOINTS
from .appearance import Appearance, BodyRegions, sample_appearance, shade_body
from .batch import Sample
from .shards import SynthRecord

GENERATOR_VERSION = 2  # bump when the same (seed, split, index) would render differently
SPLITS = ("train", "val")
SUPERSAMPLE = 2  # rendered at 2x, averaged: alpha is the person's coverage of each pixel
# Full frames (width, height) the camera may have: landscape, portrait and square video.
FRAME_SIZES = ((1920, 1080), (1280, 720), (1080, 1920), (720, 1280), (1440, 1080),
               (1080, 1440), (1080, 1080))
# A point counts as visible when no surface lies in front of it by more than this plus 1.5x
# its own depth under the skin (a joint inside a limb is hidden by nothing but its limb).
SURFACE_TOLERANCE = 0.02  # metres
ACTIVE = 0.3  # the chance that one expression, the eyes, the jaw or an eyelid moves


class PoseSource(Protocol):
    """Body and hand poses (``backend/mocap/poses.py``): parameters by spec name and a string
    naming where the pose came from (a clip and frame, or "range")."""

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str]: ...


@dataclass(frozen=True)
class Shot:
    """The full-frame camera and the crop the sample is rendered into."""

    frame_size: tuple[int, int]  # width, height
    focal: float
    principal_point: tuple[float, float]
    cam_t: np.ndarray  # (3,) camera-frame translation of the model origin
    box_center: tuple[float, float]
    box_height: float


def _face_and_identity(model: BodyModel, params: dict[str, np.ndarray],
                       rng: np.random.Generator) -> None:
    """Shape within 2.5 sd, sparse expressions within the asset's ranges, eyes, eyelids, jaw."""
    for name in ("betas", "shape"):
        if name in params:
            params[name] = np.clip(rng.normal(size=params[name].shape), -2.5, 2.5)
    if "expression" in params:
        low, high = model.spec["expression"].range
        size = params["expression"].shape
        if low >= 0:  # ARKit-like activations
            values = rng.uniform(low, min(high, 1.0), size)
        else:  # a PCA basis (FLAME, SMPL-X)
            values = np.clip(rng.normal(size=size), max(low, -2.5), min(high, 2.5))
        params["expression"] = values * (rng.uniform(size=size) < ACTIVE)
    if "eyelids" in params:
        size = params["eyelids"].shape
        params["eyelids"] = rng.uniform(0, 1, size) * (rng.uniform(size=size) < ACTIVE)
    if "jaw_pose" in params and rng.uniform() < ACTIVE:
        params["jaw_pose"] = np.array([[rng.uniform(0, 0.35), *rng.normal(0, 0.04, 2)]])
    if "eye_pose" in params and rng.uniform() < ACTIVE:  # both eyes look the same way
        gaze = [rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.35), 0.0]
        params["eye_pose"] = np.tile(gaze, (params["eye_pose"].shape[0], 1))


def facing_yaw(global_orient: np.ndarray) -> float:
    """Degrees the body turns about the model's up axis (Y) away from facing the camera: 0 for
    a zero ``global_orient``, which faces it (the model's forward is +Z)."""
    forward = Rotation.from_rotvec(np.reshape(global_orient, 3)).apply([0.0, 0.0, 1.0])
    return math.degrees(math.atan2(forward[0], forward[2]))


def sample_params(model: BodyModel, poses: PoseSource, rng: np.random.Generator,
                  facing: float = 180.0) -> tuple[dict[str, np.ndarray], str]:
    """Every parameter of the model's spec (float64, spec shapes, ``transl`` zero) and the
    pose's source: the pose source's body and hands, turned to a random view (the body turned
    up to ``facing`` degrees either way from facing the camera, 180 for any way; pitch and
    roll a few degrees), random shape and face."""
    params = {name: np.full(spec.shape, spec.default) for name, spec in model.spec.items()}
    pose, source = poses.draw(rng)
    for name, value in pose.items():
        if name not in params or name == "transl":
            raise InputError(f"the pose source gave {name!r}, which asset "
                             f"{model.asset_id!r} cannot take here (it takes "
                             f"{sorted(set(params) - {'transl'})})")
        params[name] = np.asarray(value, np.float64).reshape(model.spec[name].shape)
    view = Rotation.from_euler("XZY", [np.clip(rng.normal(0, 4), -10, 10),
                                       np.clip(rng.normal(0, 3), -8, 8),
                                       rng.uniform(-facing, facing)
                                       - facing_yaw(params["global_orient"])], degrees=True)
    params["global_orient"] = (view * Rotation.from_rotvec(params["global_orient"][0])
                               ).as_rotvec()[None]
    _face_and_identity(model, params, rng)
    return params, source


def sample_shot(body: np.ndarray, rng: np.random.Generator) -> Shot:
    """A camera that sees ``body`` (N, 3): the posed points in camera axes, about the model
    origin) at 40-95 % of the frame height through a 30-70° field of view (across the frame's
    long side), somewhere in the frame; and the crop a detector box around it would give
    (``crop_box`` with padding 1.1-1.3), shifted at random but never cutting the person."""
    width, height = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    focal = max(width, height) / 2 / math.tan(math.radians(rng.uniform(30, 70)) / 2)
    principal = np.array([width / 2, height / 2])
    low, high = body.min(0), body.max(0)
    extent, middle = high - low, (low + high) / 2
    depth = max(focal * extent[1] / (rng.uniform(0.4, 0.95) * height),
                focal * extent[0] / (0.95 * width), 0.3 + middle[2] - low[2])
    size = focal * extent[:2] / depth
    frame = np.array([width, height])
    target = [rng.uniform(min(s / 2, f / 2), max(f - s / 2, f / 2)) for s, f in zip(size, frame,
                                                                                  strict=True)]
    cam_t = np.append((target - principal) * depth / focal - middle[:2], depth - middle[2])
    placed = body + cam_t
    pixels = focal * placed[:, :2] / placed[:, 2:] + principal
    box = np.concatenate([pixels.min(0), pixels.max(0)])
    center, crop_height = crop_box(torch.as_tensor(box)[None], padding=rng.uniform(1.1, 1.3))
    center, crop_height = center[0].numpy(), float(crop_height[0])
    slack = (np.array([crop_height * INPUT_SIZE[1] / INPUT_SIZE[0], crop_height])
             - (box[2:] - box[:2])) / 2
    center = center + rng.uniform(-0.9, 0.9, 2) * np.maximum(slack, 0)
    return Shot((width, height), float(focal), (float(principal[0]), float(principal[1])),
                cam_t, (float(center[0]), float(center[1])), crop_height)


def visibility_tolerances(model: BodyModel) -> dict[str, torch.Tensor]:
    """Per keypoint set, how far (m) a surface may lie in front of each point before it hides
    it: SURFACE_TOLERANCE plus 1.5x the point's distance to the mesh at rest."""
    with torch.no_grad():
        rest = model(model.default_params(1))
        points = {JOINTS: rest.joints, **rest.landmarks}
        return {name: SURFACE_TOLERANCE + 1.5 * torch.cdist(p[0], rest.vertices[0]).min(1).values
                for name, p in points.items()}


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Sample ``index``'s own generator: the same sample whatever renders it, and the splits
    apart for any seed."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


class SynthGenerator:
    """Renders sample ``index`` of a (seed, split) for one asset: ``generator(index)``."""

    def __init__(self, asset: Asset, poses: PoseSource, seed: int, split: str,
                 facing: float = 180.0):
        if split not in SPLITS:
            raise InputError(f"split {split!r}: expected one of {list(SPLITS)}")
        if not 0 <= facing <= 180:
            raise InputError(f"facing {facing}: expected degrees from 0 (always facing the "
                             "camera) to 180 (turned any way)")
        self.facing = facing
        self.model = BodyModel(asset).double()
        self.regions = BodyRegions.of(self.model, asset.arrays)
        self.tolerances = visibility_tolerances(self.model)
        self.poses, self.seed, self.split = poses, seed, split

    def __call__(self, index: int) -> SynthRecord:
        rng = sample_rng(self.seed, self.split, index)
        params, source = sample_params(self.model, self.poses, rng, self.facing)
        output = self.pose(params)
        origin = torch.zeros(1, 3, dtype=torch.float64)
        shot = sample_shot(to_camera(output.vertices, origin)[0].numpy(), rng)
        return self.render(index, params, output, shot, sample_appearance(self.regions, rng),
                           source)

    def pose(self, params: dict[str, np.ndarray]) -> BodyOutput:
        with torch.no_grad():
            return self.model({k: torch.as_tensor(v)[None] for k, v in params.items()})

    def render(self, index: int, params: dict[str, np.ndarray], output: BodyOutput, shot: Shot,
               appearance: Appearance, source: str) -> SynthRecord:
        """The record of a posed body (``pose(params)``) seen in ``shot``."""
        cam_t = torch.as_tensor(shot.cam_t)[None]
        vertices = to_camera(output.vertices, cam_t)[0]
        fragments = self._rasterize(vertices, shot)
        color = shade_body(appearance, self.regions, fragments, vertices, self.model.faces)
        image = _downsample(color, fragments.face >= 0)
        sample = Sample(
            image=image, focal=shot.focal, principal_point=shot.principal_point,
            box_center=shot.box_center, box_height=shot.box_height,
            params={k: v.astype(np.float32) for k, v in params.items()},
            joints3d=to_camera(output.joints, cam_t)[0].numpy().astype(np.float32),
            keypoints2d=self._keypoints(output, cam_t, shot, fragments),
            mask=image[..., 3] >= 128, id=f"synth/{self.split}/{index:07d}")
        crop_camera = full_to_crop(cam_t, *_batch_of_one(
            shot.box_center, shot.box_height, shot.focal, shot.principal_point))
        return SynthRecord(index, sample, shot.cam_t.astype(np.float32),
                           crop_camera[0].numpy().astype(np.float32), shot.frame_size, source)

    def _rasterize(self, vertices: torch.Tensor, shot: Shot) -> mesh_raster.Fragments:
        """The crop at SUPERSAMPLE x its size, through the full camera seen through the crop."""
        focal, principal = crop_intrinsics(*_batch_of_one(
            shot.focal, shot.principal_point, shot.box_center, shot.box_height))
        screen = mesh_raster.project(vertices, float(focal[0]) * SUPERSAMPLE,
                                     tuple((principal[0] * SUPERSAMPLE).tolist()))
        height, width = INPUT_SIZE
        return mesh_raster.nearest_fragments(screen, self.model.faces, height * SUPERSAMPLE,
                                             width * SUPERSAMPLE)

    def _keypoints(self, output: BodyOutput, cam_t: torch.Tensor, shot: Shot,
                   fragments: mesh_raster.Fragments) -> dict[str, np.ndarray]:
        """Every keypoint set as (K, 3): x, y in normalized crop units, projected exactly as
        ``training.forward.predict`` projects, and 1 where the point is in the crop and no
        surface hides it (the render's z-buffer), else 0."""
        height, width = INPUT_SIZE
        center = torch.tensor(shot.box_center, dtype=torch.float64)
        keypoints = {}
        for name, points in {JOINTS: output.joints, **output.landmarks}.items():
            camera = to_camera(points, cam_t)[0]
            pixels = project(camera, torch.tensor(shot.focal, dtype=torch.float64),
                             torch.tensor(shot.principal_point, dtype=torch.float64))
            crop = (pixels - center) / shot.box_height
            at = ((crop * height + torch.tensor([width / 2, height / 2])) * SUPERSAMPLE).floor()
            column, row = at.long().unbind(1)
            inside = ((column >= 0) & (column < width * SUPERSAMPLE) & (row >= 0)
                      & (row < height * SUPERSAMPLE) & (camera[:, 2] > 0))
            surface = fragments.depth[row.clamp(0, height * SUPERSAMPLE - 1),
                                      column.clamp(0, width * SUPERSAMPLE - 1)]
            visible = inside & (camera[:, 2] <= surface + self.tolerances[name])
            keypoints[name] = torch.cat([crop, visible[:, None].double()], 1).numpy().astype(
                np.float32)
        return keypoints


def _batch_of_one(*values) -> list[torch.Tensor]:
    return [torch.tensor([value], dtype=torch.float64) for value in values]


def _downsample(color: torch.Tensor, hit: torch.Tensor) -> np.ndarray:
    """(H*S, W*S, 3) colours and coverage -> (H, W, 4) uint8 RGBA, straight alpha: the mean
    colour of each pixel's covered subpixels and the fraction covered."""
    height, width = INPUT_SIZE
    blocks = (height, SUPERSAMPLE, width, SUPERSAMPLE)
    covered = hit.reshape(blocks).sum((1, 3)).to(color.dtype)
    total = (color * hit[..., None]).reshape(*blocks, 3).sum((1, 3))
    rgb = total / covered.clamp_min(1)[..., None]
    rgba = torch.cat([rgb, (covered / SUPERSAMPLE**2)[..., None]], 2)
    return (rgba * 255).round().numpy().astype(np.uint8)

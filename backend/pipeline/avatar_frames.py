"""A person's avatar from one image, rendered in any motion's poses: what ``backend avatar``
and the server's ``avatar.*`` ops share.

The source image is fitted (the tracker, one frame), the person cut out by the fitted mesh's
silhouette and the avatar built once; each motion frame is then rendered with its pose,
expression and camera on the source person's shape (PEAR's Eq. 6), into a 256x192 crop that
follows the body, as the regressor's does. ``place_in_frame`` puts such a crop back where the
body is in the motion's full frame, for previews laid over the footage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..avatar.checkpoint import AvatarCheckpointMismatch, AvatarUnavailable, check_avatar_checkpoint
from ..avatar.model import Avatar, GaussianAvatar
from ..body.asset import Asset
from ..body.model import BodyModel
from ..camera import project, to_camera
from ..conventions import PERSON_PARAMS
from ..errors import InputError
from ..paths import checkpoints_dir
from ..perception.frames import Frame
from ..perception.people import PersonNotFound
from ..regressor.crop_camera import CROP_ASPECT, crop_box, crop_intrinsics
from ..regressor.inference import crop_person
from ..regressor.vit import INPUT_SIZE
from ..renderer import mesh_raster
from ..results import ClipResults
from .recovery import ClipRecovery


def renderer_checkpoint_path(asset_id: str, checkpoint: str | Path | None = None) -> Path:
    """The renderer checkpoint to use: the one given, else ``$PEAR_HOME/checkpoints/<asset>/
    renderer``."""
    return Path(checkpoint) if checkpoint is not None else checkpoints_dir() / asset_id / \
        "renderer"


def renderer_problem(asset: Asset, checkpoint: str | Path | None = None) -> str | None:
    """Why no avatar can be built for ``asset`` (None: one can); reads no weights."""
    try:
        check_avatar_checkpoint(renderer_checkpoint_path(asset.asset_id, checkpoint), asset)
    except (AvatarUnavailable, AvatarCheckpointMismatch) as exc:
        return str(exc)
    return None


@dataclass
class SourcePerson:
    """A built avatar and the shape it was built on (the per-person parameters)."""

    avatar: Avatar
    shape: dict[str, torch.Tensor]


@dataclass
class AvatarFrame:
    rgb: np.ndarray  # (256, 192, 3) uint8
    alpha: np.ndarray  # (256, 192) float32 in [0, 1]: how much the avatar covers each pixel
    center: np.ndarray  # (2,) the crop's centre in the motion's full frame, pixels
    height: float  # the crop's height there, pixels


def fit_source_image(image: np.ndarray, asset: Asset, focal: float | None = None,
                     center: tuple[float, float] | None = None) -> ClipResults:
    """The tracker's fit of one RGB image; PersonNotFound when it shows nobody."""
    height, width = image.shape[:2]
    recovery = ClipRecovery(width, height, asset, estimator="tracker", focal=focal,
                            center=center)
    recovery.add(Frame(0, 0.0, image))
    results, _ = recovery.finish(30.0, smooth=0.0, contact=False)
    if not results.info["detection_rates"].get("pose"):
        raise PersonNotFound("nobody was found in the source image, so there is no one to "
                             "build an avatar of: give an image showing the person, body in "
                             "view")
    return results


class AvatarAnimator:
    """A trained renderer on its body model, both on ``device`` (the renderer's)."""

    def __init__(self, renderer: GaussianAvatar, asset: Asset):
        self.renderer, self.asset = renderer.eval(), asset
        self.device = next(renderer.parameters()).device
        self.model = BodyModel(asset).to(self.device)

    def check_motion(self, motion: ClipResults, name: str = "the motion") -> None:
        """InputError unless ``motion`` is a result of this body model with arrays that fit
        its parameters (it may come from a file or a network message)."""
        if motion.spec_hash != self.asset.spec_hash:
            raise InputError(f"{name} was recovered with body model {motion.asset_id!r}; the "
                             f"avatar is on {self.asset.asset_id!r}: fit the footage again "
                             f"with that body model, or use a renderer for {motion.asset_id!r}")
        frames = len(motion.frames)
        expected = {spec.name: spec.shape for spec in self.asset.param_spec}
        arrays = {f"parameter {key!r}": (np.asarray(value), (None, *expected[key]))
                  for key, value in motion.params.items() if key in expected}
        arrays["cam_t"] = (np.asarray(motion.cam_t), (frames, 3))
        for label, (value, shape) in arrays.items():
            rows_ok = value.ndim == len(shape) and value.shape[0] in (
                (1, frames) if shape[0] is None else (frames,))
            if not rows_ok or value.shape[1:] != shape[1:]:
                raise InputError(f"{name}: {label} has shape {value.shape}, not ({frames} or "
                                 f"1, {', '.join(map(str, shape[1:]))}) for {frames} frames")
            if not np.isfinite(value).all():
                raise InputError(f"{name}: {label} holds NaN or infinite values")
        unknown = sorted(set(motion.params) - set(expected))
        if unknown:
            raise InputError(f"{name}: parameter(s) {unknown} are not parameters of body model "
                             f"{self.asset.asset_id!r}")
        if not (np.isfinite(motion.focal) and motion.focal > 0 and frames > 0):
            raise InputError(f"{name}: needs at least one frame and a positive focal length "
                             f"(has {frames} frames, focal {motion.focal})")

    @torch.no_grad()
    def build(self, image: np.ndarray, source: ClipResults) -> SourcePerson:
        """The avatar of the person in ``image`` (RGB uint8), fitted as ``source`` (frame 0)."""
        shape = {name: torch.as_tensor(source.params[name][:1], dtype=torch.float32,
                                       device=self.device)
                 for name in PERSON_PARAMS if name in source.params}
        vertices, K, (center, height) = self._framed(self._params(source, 0), source, 0)
        mask = _silhouette(vertices.cpu(), K.cpu(), self.renderer.faces.cpu())
        person = crop_person(image, center, height).astype(np.float32) / 255 * mask[..., None]
        pixels = torch.as_tensor(person, device=self.device).permute(2, 0, 1)[None]
        return SourcePerson(self.renderer.build(pixels, vertices, K), shape)

    @torch.no_grad()
    def render(self, person: SourcePerson, motion: ClipResults, t: int) -> AvatarFrame:
        """Motion frame ``t`` (a position in ``motion.frames``) on the person's shape."""
        params = {**self._params(motion, t), **person.shape}
        vertices, K, (center, height) = self._framed(params, motion, t)
        rendering = self.renderer.render(person.avatar, vertices, K, *INPUT_SIZE)
        rgb = (rendering.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round()
        return AvatarFrame(rgb.astype(np.uint8),
                           rendering.alpha[0, 0].clamp(0, 1).cpu().numpy(), center, height)

    def _params(self, results: ClipResults, t: int) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(values[t if len(values) > 1 else 0][None],
                                      dtype=torch.float32, device=self.device)
                for name, values in results.params.items()}

    def _framed(self, params: dict[str, torch.Tensor], results: ClipResults, t: int
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[np.ndarray, float]]:
        """The body (1, V, 3) in its camera's frame, the crop's intrinsics (1, 3, 3) and the
        crop (centre, height) around the body as the full frame shows it."""
        cam_t = torch.as_tensor(results.cam_t[t][None], dtype=torch.float32, device=self.device)
        vertices = to_camera(self.model(params).vertices, cam_t)
        focal = torch.tensor([results.focal], dtype=torch.float32)
        principal = torch.tensor([results.center], dtype=torch.float32)
        pixels = project(vertices[0].cpu(), focal[0], principal[0])
        box = torch.cat([pixels.min(0).values, pixels.max(0).values])[None]
        center, height = crop_box(box)
        crop_focal, crop_principal = crop_intrinsics(focal, principal, center, height)
        K = torch.zeros(1, 3, 3)
        K[0, 0, 0] = K[0, 1, 1] = crop_focal[0]
        K[0, :2, 2], K[0, 2, 2] = crop_principal[0], 1.0
        return vertices, K.to(self.device), (center[0].numpy(), float(height[0]))


def place_in_frame(frame: AvatarFrame, width: int, height: int, max_side: int) -> np.ndarray:
    """(h, w, 4) uint8 RGBA: the full frame (``width`` x ``height``, scaled so its longer side
    is ``max_side``) transparent but where the avatar is, at the body's place in it."""
    import cv2

    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    zoom = frame.height * scale / INPUT_SIZE[0]  # crop pixel -> output pixel
    origin = (np.asarray(frame.center, np.float64)
              - np.array([frame.height * CROP_ASPECT, frame.height]) / 2) * scale
    affine = np.array([[zoom, 0, origin[0]], [0, zoom, origin[1]]])
    rgba = np.concatenate([frame.rgb, (frame.alpha * 255).round().astype(np.uint8)[..., None]],
                          axis=2)
    return cv2.warpAffine(rgba, affine, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))


def _silhouette(vertices: torch.Tensor, K: torch.Tensor, faces: torch.Tensor) -> np.ndarray:
    """(H, W) 1 where the body covers the crop (the person's cut-out), slightly grown."""
    import cv2

    screen = mesh_raster.project(vertices[0], float(K[0, 0, 0]),
                                 (float(K[0, 0, 2]), float(K[0, 1, 2])))
    covered = (mesh_raster.rasterize(screen, faces, *INPUT_SIZE).face >= 0).numpy()
    return cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)

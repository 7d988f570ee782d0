"""Pose sources for the sample generator: body poses from motion capture (``MocapPoses``,
a folder of BVH clips), from the learned pose prior (``PriorPoses``) or from per-joint ranges
(``RangePoses``), hands from the finger model.

``draw(rng)`` returns one pose, ``{"global_orient": (1, 3), "body_pose": (21, 3),
"left_hand_pose": (15, 3), "right_hand_pose": (15, 3)}`` (axis-angle, model frame), and its
source: ``"mocap:<clip>:<frame>"`` (the clip's path below the folder without ``.bvh``, the
frame number in the file counted from 0), ``"prior"`` or ``"ranges"``. Every draw comes from
the caller's numpy Generator, so a seed fixes the poses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..body.joint_names import SMPLX_JOINT_NAMES
from ..body.model import BodyModel
from ..errors import InputError
from ..priors.pose_prior import PosePrior, load_pose_prior
from ..tracking.priors import angle_bounds, hinge_axes
from .bvh import find_bvh_files, read_bvh
from .bvh_conventions import detect_convention
from .fingers import FingerModel
from .retarget import (
    AssetSkeleton,
    RetargetedClip,
    retarget,
    select_frames,
    split_subjects,
    subject_of,
)

SPLITS = ("train", "val")
VALIDATION_FRACTION = 0.15  # of the capture subjects, held out whole
TARGET_FPS = 10.0  # mocap frames kept per second: neighbouring frames at 120 fps are alike
# RangePoses: a joint's angle is half-normal with this fraction of its bound as the sd,
# clipped at the bound (about two thirds of the joints within a third of their bound).
RANGE_SPREAD = 1 / 3
CMU_HINT = ("Download BVH clips of the CMU motion-capture database yourself: "
            "mocap.cs.cmu.edu, or Bruce Hahne's cgspeed BVH conversions (see docs/training.md)")


def pose_source(model: BodyModel, mocap: str | Path | None = None, split: str = "train",
                validation_fraction: float = VALIDATION_FRACTION
                ) -> MocapPoses | PriorPoses | RangePoses:
    """The clips below ``mocap`` (``--mocap DIR``); without them the body model's learned
    pose prior, else per-joint ranges."""
    if mocap is None:
        prior = load_pose_prior(model.asset_id)
        return RangePoses(model) if prior is None else PriorPoses(model, prior)
    return MocapPoses.from_folder(mocap, model, split, validation_fraction)


def asset_skeleton(model: BodyModel) -> AssetSkeleton:
    """The joint tree, mean-shape rest joints and knee/elbow hinge axes of a body model with
    the SMPL-X skeleton."""
    missing = [name for name in SMPLX_JOINT_NAMES[:22] if name not in model.joint_names]
    if missing or "body_pose" not in model.pose_joints:
        raise InputError(f"asset {model.asset_id!r} has no SMPL-X body skeleton (lacks "
                         f"{missing[:5] or ['body_pose']}): poses need a body asset")
    with torch.no_grad():
        rest = model(model.default_params(1)).rest_joints[0].double()
    names = list(model.joint_names)
    return AssetSkeleton(
        tuple(names), tuple(model.chain.parents), rest.cpu().numpy(),
        tuple(model.pose_joints["global_orient"] + model.pose_joints["body_pose"]),
        {joint: axis.numpy() for joint, axis in hinge_axes(rest.cpu(), names).items()})


def finger_model(model: BodyModel, skeleton: AssetSkeleton) -> FingerModel:
    return FingerModel(skeleton, {side: model.pose_joints[f"{side}_hand_pose"]
                                  for side in ("left", "right")},
                       angle_bounds(list(model.joint_names)).double().numpy())


class MocapPoses:
    """Frames of retargeted clips, drawn uniformly; whole capture subjects are held out for
    validation (``split``)."""

    kind = "mocap"

    def __init__(self, clips: Sequence[RetargetedClip], fingers: FingerModel,
                 split: str = "train", validation_fraction: float = VALIDATION_FRACTION):
        if split not in SPLITS:
            raise InputError(f"split {split!r}: expected one of {list(SPLITS)}")
        train, val = split_subjects((subject_of(c.clip_id) for c in clips), validation_fraction)
        subjects = set(train if split == "train" else val)
        self.clips = [c for c in clips if subject_of(c.clip_id) in subjects and len(c)]
        if not self.clips:
            raise InputError(f"no motion-capture frames for the {split!r} split ({len(clips)} "
                             f"clips, subjects held out for validation: {val or 'none'}). "
                             + CMU_HINT)
        self.subjects = sorted(subjects)
        self.fingers = fingers
        self.global_orient = np.concatenate([c.global_orient for c in self.clips])
        self.body_pose = np.concatenate([c.body_pose for c in self.clips])
        self._clip_of = np.concatenate([np.full(len(c), i) for i, c in enumerate(self.clips)])
        self._frame_of = np.concatenate([c.frames for c in self.clips])

    @classmethod
    def from_folder(cls, folder: str | Path, model: BodyModel, split: str = "train",
                    validation_fraction: float = VALIDATION_FRACTION,
                    target_fps: float = TARGET_FPS) -> MocapPoses:
        """Every BVH clip below ``folder`` retargeted onto ``model``'s skeleton."""
        return cls(*retargeted_clips(folder, model, target_fps), split, validation_fraction)

    def __len__(self) -> int:
        return len(self._clip_of)

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str]:
        index = int(rng.integers(len(self)))
        clip = self.clips[self._clip_of[index]]
        pose = {"global_orient": self.global_orient[index][None],
                "body_pose": self.body_pose[index], **self.fingers.draw(rng)}
        return pose, f"mocap:{clip.clip_id}:{self._frame_of[index]}"


def retargeted_clips(folder: str | Path, model: BodyModel, target_fps: float = TARGET_FPS
                     ) -> tuple[list[RetargetedClip], FingerModel]:
    """Every BVH clip below ``folder`` retargeted onto ``model``'s skeleton, and the model's
    finger model."""
    folder = Path(folder)
    files = find_bvh_files(folder)
    if not files:
        raise InputError(f"{folder}: no .bvh files. " + CMU_HINT)
    skeleton = asset_skeleton(model)
    clips = [load_clip(path, folder, skeleton, target_fps) for path in files]
    return clips, finger_model(model, skeleton)


def load_clip(path: Path, folder: Path, skeleton: AssetSkeleton,
              target_fps: float = TARGET_FPS) -> RetargetedClip:
    """One BVH file retargeted, named by its path below ``folder``."""
    clip = read_bvh(path)
    convention = detect_convention(clip.joint_names, str(path))
    return retarget(clip, skeleton, clip_id(path, folder),
                    select_frames(clip, convention, target_fps), convention)


def clip_id(path: Path, folder: Path) -> str:
    """A clip's name: its path below the mocap folder, without ``.bvh`` (its subject, and so
    the held-out split, follows from it)."""
    return path.relative_to(folder).with_suffix("").as_posix()


class PriorPoses:
    """Body poses drawn from the learned pose prior (``backend.priors``: a mixture fitted to
    motion capture), hands from the finger model; the body stands upright (the generator
    picks the view)."""

    kind = "prior"

    def __init__(self, model: BodyModel, prior: PosePrior):
        self.mixture = prior.mixtures["body_pose"]
        self.fingers = finger_model(model, asset_skeleton(model))
        self.joints = model.pose_joints["body_pose"]

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str]:
        body = self.mixture.sample(rng, 1)[0].reshape(len(self.joints), 3)
        pose = {"global_orient": np.zeros((1, 3)), "body_pose": body, **self.fingers.draw(rng)}
        return pose, self.kind


class RangePoses:
    """Body poses drawn joint by joint: knees and elbows bend about their hinge axis, every
    other body joint turns about a random axis, each by an angle within its bound from the
    tracker's priors; the body stands upright (the generator picks the view)."""

    kind = "ranges"

    def __init__(self, model: BodyModel):
        self.skeleton = asset_skeleton(model)
        self.bounds = angle_bounds(list(model.joint_names)).double().numpy()
        self.fingers = finger_model(model, self.skeleton)
        self.joints = model.pose_joints["body_pose"]

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str]:
        body = np.zeros((len(self.joints), 3))
        for row, joint in enumerate(self.joints):
            bound = self.bounds[joint]
            angle = min(abs(rng.normal(0, RANGE_SPREAD * bound)), bound)
            axis = self.skeleton.hinge_axes.get(joint)
            if axis is None:
                axis = rng.normal(size=3)
                axis /= np.linalg.norm(axis)
            body[row] = axis * angle
        pose = {"global_orient": np.zeros((1, 3)), "body_pose": body, **self.fingers.draw(rng)}
        return pose, self.kind


def held_out_motion(model: BodyModel, folder: str | Path, frames: int, fps: float = 30.0,
                    validation_fraction: float = VALIDATION_FRACTION,
                    prefer: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Up to ``frames`` frames at ``fps`` of a clip of the held-out capture subjects (no prior
    or network here was fitted to them): the one whose id is ``prefer`` when it is among them,
    else the longest; turned about the vertical so its first
    frame faces the camera: ``{"global_orient": (T, 3), "body_pose": (T, 21, 3), "transl":
    (T, 3)}`` (``transl``: metres the performer moved since the first frame, model axes) and a
    description (``"mocap:<clip>:<first frame>-<last frame>"``)."""
    folder = Path(folder)
    files = find_bvh_files(folder)
    ids = [clip_id(path, folder) for path in files]
    held_out = set(split_subjects((subject_of(i) for i in ids), validation_fraction)[1])
    candidates = [path for path, i in zip(files, ids, strict=True) if subject_of(i) in held_out]
    if not candidates:
        raise InputError(f"{folder}: no clips of held-out subjects among {len(files)} BVH "
                         "files; " + CMU_HINT)
    skeleton = asset_skeleton(model)
    chosen = [path for path in candidates if clip_id(path, folder) == prefer] or candidates
    clip = max((load_clip(path, folder, skeleton, fps) for path in chosen), key=len)
    take = slice(0, min(frames, len(clip)))
    orient = Rotation.from_rotvec(clip.global_orient[take])
    forward = orient[0].apply([0.0, 0.0, 1.0])  # the model faces +z at rest
    facing = Rotation.from_rotvec([0.0, -np.arctan2(forward[0], forward[2]), 0.0])
    motion = {"global_orient": (facing * orient).as_rotvec(),
              "body_pose": clip.body_pose[take],
              "transl": facing.apply(clip.transl[take] - clip.transl[take][0])}
    return motion, f"mocap:{clip.clip_id}:{clip.frames[take][0]}-{clip.frames[take][-1]}"

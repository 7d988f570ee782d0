"""Retargeting BVH motion onto a body model's joint tree, and the clip bookkeeping around it
(which frames to keep, which subject a clip shows, a subject-wise validation split).

Retargeting by world rotations: body joint k takes over the world rotation G of its BVH driver
(``bvh_conventions``), corrected by a constant rest alignment A_k, W_k = G A_k^T, and its local
rotation is W_parent^T W_k. A_k maps the BVH's rest-pose bone directions (every channel zero)
onto the body model's rest bones, built down the tree: a joint starts from its parent's
alignment and adds the shortest rotation that carries its own bone onto the model's. Then a
BVH pose puts every matched body bone along the BVH bone, and a BVH joint that bends about one
axis (a knee, an elbow) bends the body joint about the matching axis of the model.

Pure numpy: no file I/O (``bvh.py`` reads the files), no torch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from .bvh import BvhClip, forward_kinematics
from .bvh_conventions import Convention, detect_convention

# The body bone whose direction aligns (and is checked for) each body joint: (from, to).
_LIMB_BONES = {"hip": "knee", "knee": "ankle", "ankle": "foot", "collar": "shoulder",
               "shoulder": "elbow", "elbow": "wrist", "wrist": "middle1"}
ALIGNMENT_BONES: dict[str, tuple[str, str]] = {
    # The pelvis by its left-right axis; its twist about that axis from the spine, below.
    "pelvis": ("right_hip", "left_hip"),
    "spine1": ("spine1", "spine2"), "spine2": ("spine2", "spine3"), "spine3": ("spine3", "neck"),
    "neck": ("neck", "head"),
    **{f"{side}_{a}": (f"{side}_{a}", f"{side}_{b}") for side in ("left", "right")
       for a, b in _LIMB_BONES.items()},
}
_PELVIS_UP = ("pelvis", "spine2")
_MIN_BONE = 1e-6  # shorter BVH bones (joints placed on their parent) have no direction


@dataclass(frozen=True)
class AssetSkeleton:
    """What retargeting needs of a body model: its joint tree and rest joints (model frame,
    metres), and which joints global_orient and body_pose drive."""

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest_joints: np.ndarray  # (J, 3)
    body_joints: tuple[int, ...]  # global_orient's joint, then body_pose's joints in order
    hinge_axes: dict[int, np.ndarray]  # knee/elbow -> its flexion axis in the rest pose

    def index(self, name: str) -> int:
        return self.joint_names.index(name)


@dataclass(frozen=True)
class RetargetedClip:
    clip_id: str
    convention: str
    frames: np.ndarray  # (N,) frame numbers in the file, 0 = the first frame
    global_orient: np.ndarray  # (N, 3) axis-angle, model frame
    body_pose: np.ndarray  # (N, len(body_joints) - 1, 3) axis-angle, local to the parent
    transl: np.ndarray  # (N, 3) metres: the model's pelvis on the BVH root, at the model's size
    scale: float  # model metres per BVH unit: the model's legs over the BVH's

    def __len__(self) -> int:
        return len(self.frames)


def select_frames(clip: BvhClip, convention: Convention, target_fps: float = 10.0
                  ) -> np.ndarray:
    """Frame numbers to keep: captured frames only (no added T-pose, none of the all-zero
    frames cgspeed wrote into a few clips), about ``target_fps`` of them per second."""
    keep = np.flatnonzero(np.any(clip.motion != 0, axis=1))
    if convention.added_tpose_frame:
        keep = keep[keep > 0]
    step = max(1, round(clip.fps / target_fps))
    return keep[::step]


def retarget(clip: BvhClip, skeleton: AssetSkeleton, clip_id: str,
             frames: np.ndarray | None = None, convention: Convention | None = None
             ) -> RetargetedClip:
    """The body model's global_orient, body_pose and transl for the chosen frames (default:
    ``select_frames``) of a clip; the convention is found from the joint names by default."""
    convention = convention or detect_convention(clip.joint_names, clip.source)
    frames = select_frames(clip, convention) if frames is None else np.asarray(frames)
    world_rotations, positions = forward_kinematics(clip, frames)
    anchors = rest_anchors(clip, convention)
    alignment = rest_alignment(clip, convention, skeleton, anchors, world_rotations)
    names = clip.joint_names

    body = skeleton.body_joints
    world = np.empty((len(frames), len(body), 3, 3))
    slot = {joint: i for i, joint in enumerate(body)}
    for i, joint in enumerate(body):
        driver = convention.driver(skeleton.joint_names[joint])
        if driver is None:  # no BVH counterpart: at rest relative to its parent
            world[:, i] = world[:, slot[skeleton.parents[joint]]]
        else:
            world[:, i] = world_rotations[:, names.index(driver)] @ alignment[joint].T
    local = world.copy()
    for i, joint in enumerate(body[1:], start=1):
        local[:, i] = world[:, slot[skeleton.parents[joint]]].swapaxes(-1, -2) @ world[:, i]
    axis_angle = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(
        len(frames), len(body), 3)

    # The root's path at the model's size (the model's legs over the BVH's), so that its feet
    # meet the capture's floor and its strides are as long as its legs.
    root = positions[:, names.index(convention.anchor(skeleton.joint_names[body[0]]))]
    scale = (leg_length(lambda joint: skeleton.rest_joints[skeleton.index(joint)])
             / leg_length(lambda joint: anchors[convention.anchor(joint)]))
    return RetargetedClip(clip_id, convention.name, frames, axis_angle[:, 0], axis_angle[:, 1:],
                          root * scale - skeleton.rest_joints[body[0]], scale)


def rest_anchors(clip: BvhClip, convention: Convention) -> dict[str, np.ndarray]:
    """Each anchor's (3,) position in the BVH's rest pose (every channel zero)."""
    rest = BvhClip(clip.source, clip.joints, clip.frame_time, np.zeros((1, clip.motion.shape[1])))
    return {name: position[0] for name, position in
            anchor_positions(rest, convention, *forward_kinematics(rest)).items()}


def leg_length(position: Callable[[str], np.ndarray]) -> float:
    """Hip to knee to ankle of the left leg, from a body joint's position."""
    hip, knee, ankle = (position(f"left_{joint}") for joint in ("hip", "knee", "ankle"))
    return float(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))


def rest_alignment(clip: BvhClip, convention: Convention, skeleton: AssetSkeleton,
                   anchors: dict[str, np.ndarray], world_rotations: np.ndarray
                   ) -> dict[int, np.ndarray]:
    """Per body joint, the rotation A (3, 3) that carries the BVH's rest-pose bone directions
    (``anchors``: ``rest_anchors``) onto the body model's rest bones; ``world_rotations``
    (F, J, 3, 3) of some of the clip's frames show which way its knees and elbows bend."""

    def bvh_bone(joint_from: str, joint_to: str) -> np.ndarray | None:
        a, b = convention.anchor(joint_from), convention.anchor(joint_to)
        if a is None or b is None:
            return None
        bone = anchors[b] - anchors[a]
        return bone if np.linalg.norm(bone) > _MIN_BONE else None

    def asset_bone(joint_from: str, joint_to: str) -> np.ndarray:
        rest_joints = skeleton.rest_joints
        return rest_joints[skeleton.index(joint_to)] - rest_joints[skeleton.index(joint_from)]

    alignment: dict[int, np.ndarray] = {}
    for joint in skeleton.body_joints:
        name, parent = skeleton.joint_names[joint], skeleton.parents[joint]
        bone = ALIGNMENT_BONES.get(name)
        source = bvh_bone(*bone) if bone else None
        if parent < 0:  # every convention places both hip joints
            up = bvh_bone(*_PELVIS_UP)
            alignment[joint] = align(source, asset_bone(*bone), up, asset_bone(*_PELVIS_UP))
        elif source is None:  # an end of the tree, or no BVH bone: as its parent
            alignment[joint] = alignment[parent]
        else:
            inherited = alignment[parent]
            hinge = _hinge_below(clip, convention, skeleton, name, bone[1], world_rotations)
            if hinge is None:
                turn = shortest_rotation(inherited @ source, asset_bone(*bone))
            else:
                turn = align(inherited @ source, asset_bone(*bone), inherited @ hinge[0], hinge[1])
            alignment[joint] = turn @ inherited
    return alignment


def _hinge_below(clip: BvhClip, convention: Convention, skeleton: AssetSkeleton, joint: str,
                 child: str, world_rotations: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """When ``child`` is a hinge (knee, elbow): its flexion axis in the BVH, from the clip's
    motion, and in the body model. Twisting ``joint`` to match the two makes a BVH elbow bend
    the model's elbow in the model's own bending plane: the arms of the CMU conversions are
    twisted some 30 degrees against the model's, which a bone direction alone cannot see."""
    model_axis = skeleton.hinge_axes.get(skeleton.index(child))
    upper, lower = convention.driver(joint), convention.driver(child)
    if model_axis is None or upper is None or lower is None:
        return None
    bvh_axis = hinge_axis(world_rotations[:, clip.joint_names.index(upper)],
                          world_rotations[:, clip.joint_names.index(lower)])
    return None if bvh_axis is None else (bvh_axis, model_axis)


def hinge_axis(upper: np.ndarray, lower: np.ndarray, min_angle: float = 0.2
               ) -> np.ndarray | None:
    """The fixed axis (rest-pose frame) a BVH joint turns about relative to the one above
    (their world rotations over frames, (F, 3, 3) each), signed so that its flexion angles
    are positive; None when the frames barely bend it or it does not turn about one axis."""
    relative = upper.swapaxes(-1, -2) @ lower
    rotvecs = Rotation.from_matrix(relative).as_rotvec()
    bent = rotvecs[np.linalg.norm(rotvecs, axis=-1) > min_angle]
    if len(bent) < 3:
        return None
    _, spread, directions = np.linalg.svd(bent, full_matrices=False)
    if spread[1] > 0.3 * spread[0]:
        return None
    axis = directions[0]
    return axis if (bent @ axis).sum() > 0 else -axis


def anchor_positions(clip: BvhClip, convention: Convention, world_rotations: np.ndarray,
                     positions: np.ndarray) -> dict[str, np.ndarray]:
    """Each anchor of the convention's map (F, 3), in the file's units; ``Joint:end`` is the
    joint's End Site."""
    names = clip.joint_names
    anchors = {}
    for _, anchor in convention.joints.values():
        if anchor is None:
            continue
        joint_name, _, end = anchor.partition(":")
        joint = names.index(joint_name)
        anchors[anchor] = positions[:, joint]
        if end:
            end_site = clip.joints[joint].end_site
            if end_site is None:
                raise InputError(f"{clip.source}: joint {joint_name!r} has no End Site")
            anchors[anchor] = anchors[anchor] + world_rotations[:, joint] @ end_site
    return anchors


def shortest_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) turning the direction of ``source`` into that of
    ``target``."""
    a, b = source / np.linalg.norm(source), target / np.linalg.norm(target)
    axis, cos = np.cross(a, b), float(np.clip(a @ b, -1.0, 1.0))
    if np.linalg.norm(axis) < 1e-9:
        if cos > 0:
            return np.eye(3)
        # Opposite directions: half a turn about any axis across them.
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
    axis = axis / np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.arccos(cos)).as_matrix()


def align(primary: np.ndarray, primary_target: np.ndarray, secondary: np.ndarray | None,
          secondary_target: np.ndarray) -> np.ndarray:
    """The rotation turning ``primary`` exactly onto ``primary_target`` and, by a twist about
    that, ``secondary`` as close as it goes to ``secondary_target``."""
    swing = shortest_rotation(primary, primary_target)
    if secondary is None:
        return swing
    axis = primary_target / np.linalg.norm(primary_target)
    moved = swing @ secondary
    across = [v - (v @ axis) * axis for v in (moved, secondary_target)]
    angle = np.arctan2(axis @ np.cross(*across), across[0] @ across[1])
    return Rotation.from_rotvec(axis * angle).as_matrix() @ swing


def bone_direction_errors(clip: BvhClip, convention: Convention, skeleton: AssetSkeleton,
                          frames: np.ndarray, posed_joints: np.ndarray) -> dict[str, np.ndarray]:
    """Angle in degrees (per frame) between each matched body bone of the posed model
    (``posed_joints``: (F, J, 3) at ``frames``) and the same bone of the BVH skeleton."""
    world_rotations, positions = forward_kinematics(clip, frames)
    anchors = anchor_positions(clip, convention, world_rotations, positions)
    errors = {}
    for joint_from, joint_to in ALIGNMENT_BONES.values():
        a, b = convention.anchor(joint_from), convention.anchor(joint_to)
        if a is None or b is None:
            continue
        bvh = anchors[b] - anchors[a]
        if np.linalg.norm(bvh, axis=-1).min() <= _MIN_BONE:
            continue
        model = (posed_joints[:, skeleton.index(joint_to)]
                 - posed_joints[:, skeleton.index(joint_from)])
        cos = (bvh * model).sum(-1) / (np.linalg.norm(bvh, axis=-1)
                                       * np.linalg.norm(model, axis=-1))
        errors[f"{joint_from}-{joint_to}"] = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return errors


_CMU_TRIAL = re.compile(r"^(\d+)_\d+$")


def subject_of(clip_id: str) -> str:
    """The capture subject of a clip: CMU's subject number for a trial named like ``02_01``
    (``mb2/02/02_01`` -> ``"2"``), else the clip's folder (``daz/aclstm/salsa/01`` ->
    ``"daz/aclstm/salsa"``), so takes of one unnamed subject stay together."""
    path = PurePosixPath(clip_id)
    match = _CMU_TRIAL.match(path.name)
    if match:
        return str(int(match[1]))
    return str(path.parent) if str(path.parent) != "." else path.name


def split_subjects(subjects: Iterable[str], validation_fraction: float
                   ) -> tuple[list[str], list[str]]:
    """(training, validation) subjects: whole subjects are held out, chosen by a hash of their
    id, so the split is the same on every machine and barely moves when clips are added. At
    least one subject is held out when there are two or more and the fraction is not zero."""
    unique = sorted(set(subjects))
    if not 0.0 <= validation_fraction < 1.0:
        raise InputError(f"validation fraction {validation_fraction} must be in [0, 1)")
    count = round(validation_fraction * len(unique))
    if validation_fraction > 0 and len(unique) >= 2:
        count = max(count, 1)
    ranked = sorted(unique, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    held_out = set(ranked[:count])
    return [s for s in unique if s not in held_out], [s for s in unique if s in held_out]

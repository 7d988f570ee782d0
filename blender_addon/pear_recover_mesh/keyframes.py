"""A fitted clip as Blender keyframe values: bone-local quaternions, the root bone's
location and shape-key values per frame. Pure numpy (see ``convert`` for the frames).

Why bone-local: a Blender pose bone's rotation acts in its rest frame ``B`` (the rotation of
``bone.matrix_local``), while the model rotates joint ``j`` by ``R_j`` about its rest position
in the model frame. Linear blend skinning and Blender's armature agree exactly when
``basis_j = B_j^T (A R_j A^T) B_j`` with ``A = MODEL_TO_WORLD``, and the root bone also
carries the body's placement in the camera (``transl`` and ``cam_t``) as its location.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .convert import (
    CAMERA_TO_WORLD,
    MODEL_TO_WORLD,
    axis_angle_to_matrix,
    continuous,
    matrix_to_quaternion,
)


@dataclass
class Keyframes:
    frames: np.ndarray  # (T,) Blender frame numbers
    rotations: np.ndarray  # (T, J, 4) bone-local quaternions (w, x, y, z)
    root_location: np.ndarray  # (T, 3) the root bone's location, in its rest frame
    shape_keys: np.ndarray  # (T, E) expression values, one column per shape key


def local_rotations(params: Mapping[str, np.ndarray], pose_joints: Mapping[str, list[int]],
                    joints: int, frames: int) -> np.ndarray:
    """(T, J, 3) axis-angle rotation of every joint from the result's pose parameters; a
    joint no parameter drives stays at rest."""
    local = np.zeros((frames, joints, 3))
    for name, indices in pose_joints.items():
        if name in params:
            value = np.asarray(params[name], np.float64).reshape(-1, len(indices), 3)
            local[:, indices] = np.broadcast_to(value, (frames, len(indices), 3))
    return local


def clip_keyframes(params: Mapping[str, np.ndarray], cam_t: np.ndarray, rig: Mapping,
                   bone_rest: np.ndarray, frame_numbers: np.ndarray | None = None) -> Keyframes:
    """Keyframe values of a clip for a rig whose bones have rest rotations ``bone_rest``
    (J, 3, 3), in the rig's joint order, at Blender frames ``frame_numbers`` (default 1...)."""
    cam_t = np.asarray(cam_t, np.float64)
    frames = len(cam_t)
    joints = len(rig["joint_names"])
    local = axis_angle_to_matrix(local_rotations(params, rig["pose_joints"], joints, frames))
    world = MODEL_TO_WORLD @ local @ MODEL_TO_WORLD.T
    rest = np.asarray(bone_rest, np.float64)
    basis = np.swapaxes(rest, -1, -2) @ world @ rest
    rotations = continuous(matrix_to_quaternion(basis))
    transl = np.broadcast_to(np.asarray(params.get("transl", np.zeros((1, 3))), np.float64),
                             (frames, 3))
    offset = transl @ MODEL_TO_WORLD.T + cam_t @ CAMERA_TO_WORLD.T
    root_location = offset @ rest[0]  # rest[0]^T @ offset, row-wise
    names = rig["expression_names"]
    if names:
        values = np.asarray(params[rig["expression_param"]], np.float64).reshape(-1, len(names))
        shape_keys = np.broadcast_to(values, (frames, len(names))).copy()
    else:
        shape_keys = np.zeros((frames, 0))
    numbers = np.arange(1, frames + 1) if frame_numbers is None else np.asarray(frame_numbers)
    return Keyframes(numbers, rotations, root_location, shape_keys)


def _take(keys: Keyframes, rows: np.ndarray | slice) -> Keyframes:
    return Keyframes(keys.frames[rows], keys.rotations[rows], keys.root_location[rows],
                     keys.shape_keys[rows])


def crossfade(earlier: Keyframes, later: Keyframes) -> Keyframes:
    """``later`` (a part of the clip fitted on its own) joined onto ``earlier``: over the frames
    both hold, the values fade from ``earlier``'s to ``later``'s (quaternions by normalized
    lerp); ``later``'s quaternion signs follow on from ``earlier``'s, so interpolation across
    the join never spins the long way round. Returns the keys from the first shared frame on.
    """
    shared = np.isin(later.frames, earlier.frames)
    if not shared.any():
        raise ValueError("the two parts share no frame to fade over")
    rotations = np.array(later.rotations, np.float64)
    # Signs per joint from the first shared frame; ``later`` is already continuous in itself.
    first = int(np.flatnonzero(shared)[0])
    before = earlier.rotations[np.searchsorted(earlier.frames, later.frames[first])]
    rotations[:, (rotations[first] * before).sum(-1) < 0] *= -1
    later = Keyframes(later.frames, rotations, later.root_location, later.shape_keys)

    rows = np.flatnonzero(shared)
    old = _take(earlier, np.searchsorted(earlier.frames, later.frames[rows]))
    weight = (np.arange(len(rows)) + 1.0) / (len(rows) + 1.0)  # of ``later``, rising

    def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        w = weight.reshape(-1, *[1] * (a.ndim - 1))
        return (1 - w) * a + w * b

    quaternions = mix(old.rotations, later.rotations[rows])
    quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
    blended = Keyframes(later.frames[rows], quaternions,
                        mix(old.root_location, later.root_location[rows]),
                        mix(old.shape_keys, later.shape_keys[rows]))
    rest = _take(later, slice(rows[-1] + 1, None))
    return Keyframes(*(np.concatenate([a, b]) for a, b in zip(
        (blended.frames, blended.rotations, blended.root_location, blended.shape_keys),
        (rest.frames, rest.rotations, rest.root_location, rest.shape_keys), strict=True)))

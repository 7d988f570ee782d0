"""The 55 SMPL-X joint names, in SMPL-X order, and their parents (the tree every asset uses)."""

from __future__ import annotations

_FINGERS = ("index", "middle", "pinky", "ring", "thumb")

SMPLX_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "jaw", "left_eye_smplhf", "right_eye_smplhf",
    *(f"{side}_{finger}{k}" for side in ("left", "right") for finger in _FINGERS
      for k in (1, 2, 3)),
)


def _hand_parents(wrist: int, first: int) -> list[int]:
    parents = []
    for finger in range(len(_FINGERS)):
        base = first + 3 * finger
        parents += [wrist, base, base + 1]
    return parents


SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    *_hand_parents(20, 25), *_hand_parents(21, 40),
)

# Which joints each pose parameter drives (SMPL-X layout).
SMPLX_POSE_JOINTS: dict[str, list[int]] = {
    "global_orient": [0],
    "body_pose": list(range(1, 22)),
    "jaw_pose": [22],
    "eye_pose": [23, 24],
    "left_hand_pose": list(range(25, 40)),
    "right_hand_pose": list(range(40, 55)),
}
SMPLX_EYE_JOINTS = (23, 24)

FLAME_POSE_JOINTS: dict[str, list[int]] = {"jaw_pose": [2], "eye_pose": [3, 4]}
FLAME_EYE_JOINTS = (3, 4)

"""Elbow-twist compensation for natural wrists (as in PyMAF-X): the part of a wrist's rotation
that twists about the forearm axis is moved to the elbow, up to ±90°, so the forearm turns with
the hand instead of the skin wringing at the wrist. Joint positions and hand orientation are
unchanged; only how the twist is shared changes."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_ARMS = (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"))
LIMIT = np.pi / 2


def compensate_elbow_twist(body_pose: np.ndarray, rest_joints: np.ndarray,
                           joint_names: list[str]) -> np.ndarray:
    """body_pose: (T, 21, 3) axis-angle (joints 1..21); rest_joints: (J, 3). Returns a copy."""
    pose = body_pose.copy()
    for elbow_name, wrist_name in _ARMS:
        elbow, wrist = joint_names.index(elbow_name), joint_names.index(wrist_name)
        axis = rest_joints[wrist] - rest_joints[elbow]
        axis /= np.linalg.norm(axis)
        wrist_rotation = Rotation.from_rotvec(pose[:, wrist - 1])
        quaternion = wrist_rotation.as_quat()  # x, y, z, w
        # The twist about the axis: the quaternion's projection onto it (swing-twist split).
        angle = 2 * np.arctan2(quaternion[:, :3] @ axis, quaternion[:, 3])
        angle = (angle + np.pi) % (2 * np.pi) - np.pi
        moved = Rotation.from_rotvec(np.clip(angle, -LIMIT, LIMIT)[:, None] * axis)
        pose[:, elbow - 1] = (Rotation.from_rotvec(pose[:, elbow - 1]) * moved).as_rotvec()
        pose[:, wrist - 1] = (moved.inv() * wrist_rotation).as_rotvec()
    return pose

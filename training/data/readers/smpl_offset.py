"""PEAR's Eq. 4: SMPL pose parameters as SMPL-X ones, ``theta_smplx = theta_smpl + delta``,
with one constant offset ``delta`` per body joint that turns SMPL-X's T-pose into SMPL's.

SMPL's first 22 joints are SMPL-X's body joints (pelvis .. wrists, same names and tree; SMPL's
two hand joints have no SMPL-X body counterpart). The two T-poses differ by small bends, so the
offset is found joint by joint down the tree: given its parents' turns, each joint turns by the
smallest rotation that lays its bone along SMPL's (the least-squares rotation of all its bones
for spine3: neck and collars); the root (the global orientation is free) and the leaves (head,
feet, wrists: no bone below them among the 22) keep zero. Compute it once per asset from SMPL's rest
joints (``J_regressor @ v_template`` of a user's SMPL file) and the SMPL-X asset's.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.joint_names import SMPLX_PARENTS
from backend.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle

BODY_JOINTS = 22  # pelvis .. right_wrist, shared by SMPL and SMPL-X


def _rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation matrix taking unit directions ``source`` (C, 3) onto ``target``: the
    smallest one for one direction, the least-squares fit (Kabsch) for several."""
    if len(source) == 1:
        cross = np.cross(source[0], target[0])
        sine, cosine = np.linalg.norm(cross), float(np.dot(source[0], target[0]))
        if sine < 1e-12:
            return np.eye(3)
        angle = torch.as_tensor(cross / sine * np.arctan2(sine, cosine))
        return axis_angle_to_matrix(angle).numpy()
    u, _, vt = np.linalg.svd(target.T @ source)
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ flip @ vt


def tpose_offset(smpl_rest: np.ndarray, smplx_rest: np.ndarray) -> np.ndarray:
    """(22, 3) axis-angle per body joint (row 0, the root, is zero) from both models' (>= 22,
    3) rest joints: SMPL-X posed with it has SMPL's rest bone directions."""
    parents = SMPLX_PARENTS[:BODY_JOINTS]
    offset = np.zeros((BODY_JOINTS, 3))
    world = [np.eye(3)] * BODY_JOINTS
    for joint in range(1, BODY_JOINTS):
        parent_world = world[parents[joint]]
        children = [c for c in range(BODY_JOINTS) if parents[c] == joint]
        local = np.eye(3)
        if children:
            ours = smplx_rest[children] - smplx_rest[joint]
            theirs = (smpl_rest[children] - smpl_rest[joint]) @ parent_world
            local = _rotation_between(ours / np.linalg.norm(ours, axis=1, keepdims=True),
                                      theirs / np.linalg.norm(theirs, axis=1, keepdims=True))
            offset[joint] = matrix_to_axis_angle(torch.as_tensor(local)).numpy()
        world[joint] = parent_world @ local
    return offset


def rest_joints(asset: Asset) -> np.ndarray:
    """The asset's joints at zero parameters (its T-pose), (J, 3)."""
    from backend.body.model import BodyModel

    with torch.no_grad():
        return BodyModel(asset).double()().joints[0].numpy()


def smpl_to_smplx(global_orient: np.ndarray, body_pose: np.ndarray, offset: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """One SMPL pose (global_orient (3,), body_pose (23, 3)) as SMPL-X's global_orient (1, 3)
    and body_pose (21, 3) by Eq. 4 (the offset added in axis-angle, as the paper does)."""
    pose = np.concatenate([np.reshape(global_orient, (1, 3)),
                           np.reshape(body_pose, (-1, 3))[:BODY_JOINTS - 1]]) + offset
    return {"global_orient": pose[:1].astype(np.float32),
            "body_pose": pose[1:].astype(np.float32)}


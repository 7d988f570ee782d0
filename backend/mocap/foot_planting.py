"""Planted feet for motion played on a body it was not captured on.

A captured walk retargeted onto another body keeps its joint angles, but the body's legs are
not the performer's: a foot that stood still under the performer slides under the body (the
bench's held-out CMU walk: 2.3-3.9 mm per frame in the middle of a stance, where people's feet
do not move). Like an animator's foot lock, ``plant_feet`` finds where the feet touch the
ground (``tracking.contact``) and moves the root and the legs a little, smoothly, so that the
touching feet hold still and no foot goes through the floor; the rest of the body keeps its
captured angles. Pure torch and numpy, no I/O.
"""

from __future__ import annotations

import numpy as np
import torch

from ..body.landmark_model import LandmarkModel
from ..body.model import BodyModel
from ..camera import to_camera
from ..conventions import FOOT_JOINTS
from ..tracking.contact import MIN_FRAMES, contact_cost, ground_and_contacts

LEG_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
              "left_foot", "right_foot")
# Weights of squared metres (a held foot's slide, the root's added acceleration) and squared
# radians (the legs' change, its acceleration): a 1 mm slide costs as much as changing one leg
# joint by 0.01 rad, so the legs bend only as much as planting needs. On the bench's walk
# (docs/tracker.md) the feet then slide 0.4 instead of 3.7 mm per frame, the joints'
# acceleration unchanged.
SLIDE_WEIGHT = 1e5
ROOT_SMOOTHNESS = 1e5
LEG_CHANGE = 1.0
LEG_SMOOTHNESS = 10.0


def plant_feet(model: BodyModel, params: dict[str, torch.Tensor], cam_t: torch.Tensor,
               fps: float, iterations: int = 300) -> tuple[dict[str, torch.Tensor],
                                                          torch.Tensor, np.ndarray]:
    """``params`` (per frame (T, ...), per subject (1, ...)) and ``cam_t`` (T, 3), the root's
    camera-frame translation, with the feet planted: the root moved and the legs' angles
    changed (smoothly, as little as planting needs) so that each ``FOOT_JOINTS`` point holds
    still while it touches the ground. Returns them and the contacts (T, 4) they were planted
    on. Clips shorter than the shortest contact come back unchanged."""
    frames = len(cam_t)
    if frames < MIN_FRAMES:
        return params, cam_t, np.zeros((frames, len(FOOT_JOINTS)), bool)
    joints_only = LandmarkModel(model, [])
    feet = [model.joint_names.index(name) for name in FOOT_JOINTS]
    legs = [model.pose_joints["body_pose"].index(model.joint_names.index(name))
            for name in LEG_JOINTS]

    def with_legs(change: torch.Tensor) -> torch.Tensor:
        pose = params["body_pose"].clone()
        pose[:, legs] = pose[:, legs] + change
        return pose

    def feet_of(pose: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        posed = {**{k: v.expand(frames, *v.shape[1:]) for k, v in params.items()},
                 "body_pose": pose}
        return to_camera(joints_only(posed)[1][:, feet], translation)

    with torch.no_grad():
        captured = feet_of(params["body_pose"], cam_t).cpu().double().numpy()
    ground, contacts = ground_and_contacts(captured, params["global_orient"], fps)
    held = torch.as_tensor(contacts, device=cam_t.device)

    shift = torch.zeros_like(cam_t, requires_grad=True)
    change = torch.zeros(frames, len(legs), 3, dtype=cam_t.dtype, device=cam_t.device,
                         requires_grad=True)
    optimizer = torch.optim.Adam([shift, change], lr=2e-3)
    for _ in range(iterations):
        optimizer.zero_grad()
        cost = (SLIDE_WEIGHT * contact_cost(feet_of(with_legs(change), cam_t + shift), held,
                                            ground)
                + ROOT_SMOOTHNESS * _acceleration(shift)
                + LEG_CHANGE * change.square().sum()
                + LEG_SMOOTHNESS * _acceleration(change))
        cost.backward()
        optimizer.step()
    with torch.no_grad():
        pose = with_legs(change)
    return {**params, "body_pose": pose}, (cam_t + shift).detach(), contacts


def _acceleration(values: torch.Tensor) -> torch.Tensor:
    """Sum of squared second differences over the first axis."""
    return (values[2:] - 2 * values[1:-1] + values[:-2]).square().sum()

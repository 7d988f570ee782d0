"""The tracker's 3D term from MediaPipe's metric pose: bone directions, the crop's view, the
robust cost, and a fit that a depth-flipped arm cannot fool once the term is on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.tracking.synthetic import make_clip
from backend.tracking.tracker import PART_LANDMARKS, Tracker, TrackerConfig
from backend.tracking.world_bones import (
    WORLD_BONES,
    bone_vectors,
    crop_view,
    world_bone_cost,
    world_targets,
)

NO_LEARNED_PRIOR = {"learned_pose_prior": 0.0, "learned_hand_prior": 0.0}
LEFT_SHOULDER, LEFT_ELBOW = 11, 13  # BlazePose
UPPER_ARM = WORLD_BONES.index((LEFT_SHOULDER, LEFT_ELBOW))


def _random_pose(frames: int, seed: int = 0) -> torch.Tensor:
    """(T, 33, 3) points a few metres in front of the camera, off the optical axis."""
    rng = np.random.default_rng(seed)
    points = rng.normal(0, 0.4, (frames, 33, 3)) + [0.8, -0.3, 4.0]
    return torch.as_tensor(points)


def _detected_exactly(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``world_targets`` of a detector that saw ``points`` (camera frame) without error."""
    seen = crop_view(points)
    world = torch.cat([points @ seen.transpose(1, 2),
                       torch.ones(*points.shape[:2], 1, dtype=points.dtype)], -1)
    return world_targets(world)


def test_crop_view_turns_the_ray_through_the_hips_onto_the_optical_axis():
    points = _random_pose(5)
    rotation = crop_view(points)
    ray = points[:, [23, 24]].mean(1)
    turned = (rotation @ (ray / ray.norm(dim=-1, keepdim=True))[..., None])[..., 0]
    torch.testing.assert_close(turned, torch.tensor([[0.0, 0, 1]] * 5, dtype=torch.float64))
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2),
                               torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(5, dtype=torch.float64))


def test_the_detected_feet_do_not_pull():
    """MediaPipe's 3D feet are its worst bones (seen from behind it turns the toes toward the
    camera, ~90 degrees off): a detected foot pointing anywhere costs the same, while a
    detected shin turned the same way does cost."""
    points = _random_pose(2, seed=3)
    directions, confidence = _detected_exactly(points)
    exact = world_bone_cost(points, directions, confidence, 1.5)
    for child in (31, 32, 27):  # foot indices, then the left ankle (end of the left shin)
        moved = points.clone()
        moved[:, child] += torch.tensor([0.0, 0.0, -0.3], dtype=torch.float64)
        cost = world_bone_cost(points, *_detected_exactly(moved), 1.5)
        if child == 27:
            assert (cost > exact + 1e-3).all()
        else:
            torch.testing.assert_close(cost, exact)


def test_targets_are_unit_directions_with_the_weaker_ends_confidence():
    points = _random_pose(3)
    world = torch.cat([points, torch.full((3, 33, 1), 0.9, dtype=torch.float64)], -1)
    world[1, LEFT_ELBOW, 3] = 0.6
    world[2] = 0.0  # nobody found in this frame
    directions, confidence = world_targets(world)
    assert directions.shape == (3, len(WORLD_BONES), 3)
    torch.testing.assert_close(directions[:2].norm(dim=-1),
                               torch.ones(2, len(WORLD_BONES), dtype=torch.float64))
    assert confidence[0].eq(0.9).all() and confidence[1, UPPER_ARM] == 0.6
    assert confidence[2].eq(0).all()


def test_cost_is_zero_at_the_detected_directions_and_bounded_when_a_limb_is_flipped():
    points = _random_pose(2)
    directions, confidence = _detected_exactly(points)
    assert world_bone_cost(points, directions, confidence, 0.5).abs().max() < 1e-12
    flipped = directions.clone()
    flipped[:, UPPER_ARM] = -flipped[:, UPPER_ARM]
    cost = world_bone_cost(points, flipped, confidence, 0.5)
    # chord 2: the robust cost 4 * 0.25 / (0.25 + 4), over the bones
    torch.testing.assert_close(cost, torch.full((2,), 1.0 / 4.25 / len(WORLD_BONES),
                                                dtype=torch.float64))


def test_depth_only_cost_ignores_a_turn_in_the_image_plane_but_not_a_flip_in_depth():
    points = _random_pose(2)
    directions, confidence = _detected_exactly(points)
    # Every detected bone turned 40 degrees about the optical axis: the depths stay.
    angle = np.radians(40.0)
    about_axis = torch.tensor([[np.cos(angle), -np.sin(angle), 0.0],
                               [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]],
                              dtype=torch.float64)
    turned = directions @ about_axis.T
    assert world_bone_cost(points, turned, confidence, 1.5, depth_only=True).abs().max() < 1e-12
    assert world_bone_cost(points, turned, confidence, 1.5).min() > 0.05
    mirrored = directions.clone()
    mirrored[..., 2] = -mirrored[..., 2]  # every bone pointing the other way in depth
    depth = (directions[..., 2] * 2).square()
    expected = (depth * 1.5**2 / (1.5**2 + depth)).sum(-1) / len(WORLD_BONES)
    torch.testing.assert_close(
        world_bone_cost(points, mirrored, confidence, 1.5, depth_only=True), expected)
    assert expected.min() > 0.05


def _arm_forward_clip(asset, degrees: float):
    """A still body facing the camera, its left arm swung ``degrees`` from the T-pose toward
    the camera (negative: behind the body); 2D keypoints and an exact metric pose."""
    model = BodyModel(asset).double()
    with torch.no_grad():
        rest = model(model.default_params(1)).rest_joints[0]
    arm = (rest[18] - rest[16]).numpy()  # left elbow - left shoulder (SMPL-X joints)
    swing = np.radians(degrees) * (-1 if arm[0] > 0 else 1)  # about +Y, toward +Z (front)
    body_pose = np.zeros((3, 21, 3))
    body_pose[:, 15] = [0.0, swing, 0.0]  # the left shoulder, body joint 16
    motion = {"global_orient": np.zeros((3, 3)), "body_pose": body_pose}
    return make_clip(BodyModel(asset), frames=3, seed=4, motion=motion, world_noise_m=0.0)


def _upper_arm_angle(clip, asset, params) -> float:
    """Degrees between the fitted and the true left upper arm (model frame)."""
    model = BodyModel(asset).double()
    with torch.no_grad():
        posed = model({k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()})
    fitted = bone_vectors(posed.landmarks[PART_LANDMARKS["pose"]])[:, UPPER_ARM]
    truth = bone_vectors(torch.as_tensor(
        _posed_points(clip, asset)))[:, UPPER_ARM]
    cosine = (fitted * truth).sum(-1) / (fitted.norm(dim=-1) * truth.norm(dim=-1))
    return float(np.degrees(np.arccos(cosine.clamp(-1, 1))).mean())


def _posed_points(clip, asset) -> np.ndarray:
    model = BodyModel(asset).double()
    with torch.no_grad():
        return model(clip.params).landmarks[PART_LANDMARKS["pose"]].numpy()


@pytest.mark.parametrize("weight", [0.0, TrackerConfig.world_bones])
def test_the_metric_pose_pulls_a_depth_flipped_arm_back(open_asset, weight):
    clip = _arm_forward_clip(open_asset, 50)
    behind = _arm_forward_clip(open_asset, -50)  # projects almost exactly alike
    start = {name: value.numpy().repeat(3 // len(value), 0)
             for name, value in behind.params.items()}
    start["cam_t"] = clip.cam_t.numpy()
    config = TrackerConfig(focal=clip.focal, initial=start, iterations=(20, 300, 50),
                           world_bones=weight, **NO_LEARNED_PRIOR)
    fit = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
    angle = _upper_arm_angle(clip, open_asset, fit.params)
    if weight:
        assert angle < 20, angle  # from 100 degrees off
    else:  # the 2D keypoints alone leave the arm behind the body
        assert angle > 60, angle

"""Feet on the ground: the ground plane, contact detection with hysteresis, the contact cost,
and a tracker fit of a walk whose feet stay put once the contact stage runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend.body.model import BodyModel
from backend.conventions import FOOT_JOINTS, MODEL_TO_CAMERA
from backend.mocap.foot_planting import LEG_JOINTS, plant_feet
from backend.tracking.contact import (
    FOOT_PAIRS,
    MIN_FRAMES,
    Ground,
    contact_cost,
    detect_contacts,
    estimate_ground,
    foot_skate_mm,
    jitter_mm_s2,
)
from backend.tracking.metrics import pa_error_mm
from backend.tracking.synthetic import make_clip, walking_motion
from backend.tracking.tracker import ITERATIONS_WITHOUT_CONTACT, Tracker, TrackerConfig

FPS = 30.0


def _stepping_feet(frames: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Two feet (ankle-high points) taking turns: each rests 15 frames then swings 15 frames
    forward 0.6 m, lifted up to 10 cm; floor at y = 0. Returns points (T, 2, 3) and the true
    contacts (T, 2)."""
    points = np.zeros((frames, 2, 3))
    contacts = np.zeros((frames, 2), bool)
    for foot in range(2):
        x, z = (-0.1, 0.1)[foot], 0.0
        for t in range(frames):
            cycle = (t + 15 * foot) % 30
            if cycle < 15:
                contacts[t, foot] = True
            else:
                z += 0.6 / 15
            lift = 0.1 * np.sin(np.pi * (cycle - 15) / 15) if cycle >= 15 else 0.0
            points[t, foot] = (x, 0.08 + lift, z)
    return points, contacts


def _tilted(points: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The points seen by a camera tilted ``degrees`` about x, 3 m away; and the floor's up."""
    turn = Rotation.from_euler("x", degrees, degrees=True)
    return turn.apply(points.reshape(-1, 3)).reshape(points.shape) + [0, 1.2, 3.0], \
        turn.apply([0.0, 1.0, 0.0])


def test_ground_and_contacts_of_a_stepping_pair_of_feet():
    feet, truth = _stepping_feet()
    seen, up = _tilted(feet, 20)
    # The body's up is a poor guess at the floor's (the walker leans 10 degrees): the plane
    # refitted to the lowest points finds the floor.
    lean = Rotation.from_euler("z", 10, degrees=True).apply(up)
    ground = estimate_ground(seen, lean, FPS, pairs=((0, 1),))
    assert np.degrees(np.arccos(ground.normal @ up)) < 2
    np.testing.assert_allclose(ground.heights(seen).min(0), [0.0, 0.0], atol=0.01)
    # Each foot alone leaves the walk's sideways tilt unknown: the lean stays.
    alone = estimate_ground(seen, lean, FPS)
    assert np.degrees(np.arccos(alone.normal @ up)) > 8
    found = detect_contacts(seen, ground, FPS)
    assert (found == truth).mean() > 0.9
    assert foot_skate_mm(seen, found, ground.normal) < 1.0
    assert foot_skate_mm(seen, np.ones_like(found), ground.normal) > 10


def test_short_contacts_are_dropped_and_exits_are_looser_than_entries():
    ground = Ground(np.array([0.0, 1.0, 0.0]), 0.0, np.array([0.0]))
    feet = np.zeros((12, 1, 3))
    feet[:, 0, 1] = [0.2, 0.2, 0.0, 0.0, 0.2, 0.2, 0.0, 0.0, 0.0, 0.045, 0.045, 0.2]
    contacts = detect_contacts(feet, ground, fps=1.0)[:, 0]  # metres per frame = per second
    # frames 2-3 touch for two frames only (dropped); 6-10 enter at 0 m and stay at 4.5 cm
    np.testing.assert_array_equal(contacts, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    hovering = np.zeros((6, 1, 3))
    hovering[:, 0, 1] = 0.045  # never low enough to enter
    assert not detect_contacts(hovering, ground, fps=1.0).any()


def test_a_fitted_foot_may_move_faster_than_a_captured_one_and_still_touch():
    ground = Ground(np.array([0.0, 1.0, 0.0]), 0.0, np.array([0.0]))
    feet = np.zeros((8, 1, 3))
    feet[:, 0, 0] = 0.3 * np.arange(8)  # on the ground, at 0.3 m/s: the fit's noise
    assert not detect_contacts(feet, ground, fps=1.0).any()
    assert detect_contacts(feet, ground, fps=1.0, speeds=TrackerConfig.contact_speeds).all()


def test_contact_cost_counts_sliding_and_sinking_only():
    ground = Ground(np.array([0.0, 1.0, 0.0]), 0.0, np.array([0.05, 0.05]))
    still = torch.zeros(3, 2, 3, dtype=torch.float64)
    still[..., 1] = 0.05
    contacts = torch.ones(3, 2, dtype=torch.bool)
    assert contact_cost(still, contacts, ground) == 0
    sliding = still.clone()
    sliding[:, 0, 0] = torch.tensor([0.0, 0.01, 0.02])
    assert contact_cost(sliding, contacts, ground) == pytest.approx(2e-4)
    assert contact_cost(sliding, torch.zeros_like(contacts), ground) == 0  # in the air
    sunk = still.clone()
    sunk[1, 1, 1] = 0.03
    assert contact_cost(sunk, torch.zeros_like(contacts), ground) == pytest.approx(4e-4)


def test_jitter_is_the_mean_acceleration():
    t = np.arange(10) / FPS
    points = np.zeros((10, 1, 3))
    points[:, 0, 0] = 0.5 * 2.0 * t**2  # 2 m/s^2
    assert jitter_mm_s2(points, FPS) == pytest.approx(2000.0)


def _camera_joints(model, params, cam_t) -> np.ndarray:
    with torch.no_grad():
        joints = model({k: torch.as_tensor(v, dtype=torch.float64)
                        for k, v in params.items()}).joints.numpy()
    return joints @ np.array(MODEL_TO_CAMERA).T + np.asarray(cam_t)[:, None]


def test_a_walk_keeps_its_planted_feet_still_with_the_contact_stage(open_asset):
    model = BodyModel(open_asset).double()
    # The walk plants the mean body's feet: the clip keeps that body.
    clip = make_clip(BodyModel(open_asset), frames=45, seed=1, noise_px=1.0, betas_scale=0.0,
                     motion=walking_motion(model, 45, FPS))
    feet = [model.joint_names.index(name) for name in FOOT_JOINTS]
    truth = clip.joints @ np.array(MODEL_TO_CAMERA).T + clip.cam_t.numpy()[:, None]
    ground = estimate_ground(truth[:, feet], np.array(MODEL_TO_CAMERA)[:, 1], FPS, FOOT_PAIRS)
    contacts = detect_contacts(truth[:, feet], ground, FPS)
    assert 0.2 < contacts.mean() < 0.8  # the walk has stance and swing
    assert foot_skate_mm(truth[:, feet], contacts, ground.normal) < 1.0
    fits = {}
    for weight in (0.0, TrackerConfig.contact):
        config = TrackerConfig(focal=clip.focal, contact=weight)
        fits[weight] = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
    skate = {w: foot_skate_mm(_camera_joints(model, f.params, f.cam_t)[:, feet], contacts,
                              ground.normal) for w, f in fits.items()}
    error = {w: pa_error_mm(_camera_joints(model, f.params, f.cam_t)[:, :22], truth[:, :22])
             for w, f in fits.items()}
    on = TrackerConfig.contact
    assert fits[on].contacts is not None and fits[0.0].contacts is None
    assert skate[on] < 0.6 * skate[0.0], skate
    assert error[on] < 1.1 * error[0.0], error


def test_planting_stops_the_feet_of_a_walk_played_on_other_legs_sliding(open_asset):
    """A walk whose root travels 15 % farther than its legs reach (a performer with longer
    legs): its stance feet slide; planted, they hold still, the body stays within a few cm of
    the capture, only the legs' angles change, and the motion is no jerkier."""
    model = BodyModel(open_asset).double()
    walk = walking_motion(model, 45, FPS)
    walk["transl"] = walk["transl"] * 1.15
    clip = make_clip(BodyModel(open_asset), frames=45, seed=1, betas_scale=0.0, motion=walk)
    params, cam_t, contacts = plant_feet(model, clip.params, clip.cam_t, FPS)
    feet = [model.joint_names.index(name) for name in FOOT_JOINTS]
    before = _camera_joints(model, clip.params, clip.cam_t)
    after = _camera_joints(model, params, cam_t)
    normal = estimate_ground(before[:, feet], np.array(MODEL_TO_CAMERA)[:, 1], FPS,
                             FOOT_PAIRS).normal
    assert 0.2 < contacts.mean() < 0.8
    sliding = foot_skate_mm(before[:, feet], contacts, normal)
    planted = foot_skate_mm(after[:, feet], contacts, normal)
    assert sliding > 2.0 and planted < 0.25 * sliding, (sliding, planted)
    assert np.linalg.norm(after - before, axis=-1).mean() < 0.03
    assert jitter_mm_s2(after[:, :22], FPS) < 1.1 * jitter_mm_s2(before[:, :22], FPS)
    legs = [model.pose_joints["body_pose"].index(model.joint_names.index(name))
            for name in LEG_JOINTS]
    others = [row for row in range(params["body_pose"].shape[1]) if row not in legs]
    torch.testing.assert_close(params["body_pose"][:, others],
                               clip.params["body_pose"][:, others])
    assert not torch.allclose(params["body_pose"][:, legs], clip.params["body_pose"][:, legs])


def test_a_fit_with_no_contact_stage_gives_the_body_its_steps(open_asset):
    """A clip too short for contacts (here two frames; one photograph alike) runs no contact
    stage, and its body stage gets the steps that stage would have finished it with, as a
    ``--no-contact`` fit does; steps a caller sets are kept."""
    clip = make_clip(BodyModel(open_asset), frames=MIN_FRAMES - 1, seed=0)

    def schedule(config: TrackerConfig) -> tuple[int, ...]:
        steps = {}
        Tracker(BodyModel(open_asset), config).fit(
            clip.keypoints, progress=lambda label, step, total: steps.update({label: total}))
        return tuple(steps.values())

    assert schedule(TrackerConfig(focal=clip.focal)) == ITERATIONS_WITHOUT_CONTACT
    assert schedule(TrackerConfig(focal=clip.focal, iterations=(2, 3, 4))) == (2, 3, 4)

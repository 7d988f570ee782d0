"""The face in the tracker: measured in its own size, placed by the face mesh, and expressions
that follow the person's (a close-up with known facial actions)."""

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.conventions import KEYPOINT_SEEN
from backend.errors import InputError
from backend.tracking.metrics import action_correlations
from backend.tracking.synthetic import FACIAL_ACTIONS, face_clip
from backend.tracking.tracker import Tracker, TrackerConfig, part_scales


def _part(frames: int, points: np.ndarray, confidence: float = 1.0) -> np.ndarray:
    return np.concatenate([np.broadcast_to(points, (frames, *points.shape)),
                           np.full((frames, len(points), 1), confidence)], axis=-1)


def test_the_face_is_measured_in_its_own_size():
    body = _part(2, np.array([[0.0, 0.0], [0.0, 400.0], [100.0, 200.0], [-100.0, 200.0]]))
    face = _part(2, np.stack(np.meshgrid(np.linspace(0, 50, 4), np.linspace(0, 60, 4)), -1
                             ).reshape(-1, 2))
    face[1, :, 2] = 0.0  # not found in the second frame
    scales = part_scales({"pose": body, "face": face, "left_hand": face}, 720)
    assert scales["pose"].tolist() == [400.0, 400.0] == scales["left_hand"].tolist()
    # A face this small beside the body (a full-body shot) counts in 0.4 of the body's size;
    # where it was not found it does not count, whatever the unit.
    assert scales["face"][0] == 160.0 and scales["face"][1] > 0
    close_up = part_scales({"pose": body, "face": face * [4, 4, 1]}, 720)
    assert close_up["face"][0] == 240.0  # its own size


def test_the_face_mesh_places_the_head_where_it_was_found(open_asset):
    frames, tracker = 3, Tracker(BodyModel(open_asset), TrackerConfig())
    pose = torch.ones(frames, 33, 3)
    face = torch.ones(frames, 478, 3)
    face[2, :, 2] = 0.0  # the face mesh missed the third frame
    targets = {"pose": pose, "face": face}
    fine = tracker._face_over_pose(targets, tracker._face_found(targets))
    # BlazePose's coarse face points (nose, eyes, ears, mouth) give way to the mesh's 478 ...
    assert (fine["pose"][:2, :11, 2] == 0).all() and (fine["pose"][:2, 11:, 2] == 1).all()
    # ... except where the mesh is missing; and the caller's targets are untouched.
    assert (fine["pose"][2, :, 2] == 1).all() and (pose[..., 2] == 1).all()


def test_guesses_below_the_seen_confidence_are_not_evidence(open_asset):
    tracker = Tracker(BodyModel(open_asset), TrackerConfig())
    clip = face_clip(BodyModel(open_asset), open_asset.meta["expression_names"], frames=3)
    keypoints = clip.keypoints
    keypoints.parts["pose"][:, 13, 2] = 0.2  # an elbow below the frame, guessed
    targets, _ = tracker._targets(keypoints, np.array([640.0, 360.0]))
    assert (targets["pose"][:, 13, 2] == 0).all()
    assert (targets["pose"][:, 11, 2] > KEYPOINT_SEEN).all()  # a shoulder in view


def test_action_correlations():
    time = np.linspace(0, 1, 20)
    truth = {"jawOpen": time, "smile": np.sin(6 * time) ** 2}
    names = ["jawOpen", "mouthSmileLeft", "mouthSmileRight"]
    fitted = np.stack([0.5 * time, np.sin(6 * time) ** 2, np.zeros(20)], 1)
    r = action_correlations(fitted, truth, names, {"jawOpen": ("jawOpen",),
                                                   "smile": ("mouthSmileLeft",
                                                             "mouthSmileRight")})
    assert r["jawOpen"] == pytest.approx(1.0) and r["smile"] == pytest.approx(1.0)
    r = action_correlations(np.zeros((20, 3)), truth, names, {"jawOpen": ("jawOpen",)})
    assert r == {"jawOpen": 0.0}  # a fit that never moves


def test_a_face_clip_needs_named_expressions(open_asset):
    with pytest.raises(InputError, match="ARKit"):
        face_clip(BodyModel(open_asset), ["e0", "e1"], frames=2)


def test_the_fitted_face_follows_the_performers(open_asset):
    """A close-up performing facial actions with known tracks, fitted from its landmarks:
    every action is followed (r >= 0.6, 0.85 on average; the raised inner brows, which
    the outer brows can stand in for, worst) at a good share of its size. Before
    the face had its own unit and faster face parameters, a clip like it correlated 0.2-0.9
    with fitted weights a tenth to a hundredth of the truth's (slopes 0.01-0.2)."""
    names = open_asset.meta["expression_names"]
    clip = face_clip(BodyModel(open_asset), names, frames=60)
    result = Tracker(BodyModel(open_asset), TrackerConfig(focal=clip.focal)).fit(clip.keypoints)
    r = action_correlations(result.params["expression"], clip.actions, names, FACIAL_ACTIONS)
    assert min(r.values()) >= 0.6 and np.mean(list(r.values())) >= 0.85, r
    slopes = {}
    for action, shapes in FACIAL_ACTIONS.items():
        fitted = result.params["expression"][:, [names.index(s) for s in shapes]].mean(1)
        slopes[action] = np.polyfit(clip.actions[action], fitted, 1)[0]
    assert min(slopes.values()) > 0.15 and np.mean(list(slopes.values())) > 0.4, slopes
    assert result.reprojection_px["face"] < 3.0


def test_shoulders_that_collapse_for_a_few_frames_do_not_throw_the_camera(open_asset):
    """On close-ups BlazePose's shoulders can shrink to a third of their width for a few frames
    as the head turns, at full confidence; a camera started from them (3x as far) stayed there,
    and the face ended tens of pixels off. The start is a running median over 0.5 s."""
    clip = face_clip(BodyModel(open_asset), open_asset.meta["expression_names"], frames=40)
    pose = clip.keypoints.parts["pose"]
    glitch = slice(16, 22)
    middle = pose[glitch, 11:13, :2].mean(1, keepdims=True)
    pose[glitch, 11:13, :2] = middle + (pose[glitch, 11:13, :2] - middle) / 3
    result = Tracker(BodyModel(open_asset), TrackerConfig(focal=clip.focal)).fit(clip.keypoints)
    depth = result.cam_t[:, 2]
    assert np.abs(depth[glitch] / np.median(depth) - 1).max() < 0.1, depth[glitch]
    assert result.reprojection_px["face"] < 3.0

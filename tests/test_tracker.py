"""The tracker on clips made from the model itself, where the answer is known exactly."""

import numpy as np
import pytest
import torch

from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.tracking.metrics import body_pa_mm, pa_error_mm, procrustes_align
from backend.tracking.synthetic import make_clip, rough_start, turned
from backend.tracking.tracker import (
    ITERATIONS_WITHOUT_CONTACT,
    REFINE_ITERATIONS,
    Tracker,
    TrackerConfig,
)

from .conftest import random_params


@pytest.mark.parametrize("asset_model", ["open_model", "smplx_model"])  # smplx: pose blend shapes
def test_landmark_model_equals_the_full_forward(asset_model, request):
    model = request.getfixturevalue(asset_model)
    sparse = LandmarkModel(model)
    # Per call it handles (landmark, joint) pairs, not the mesh.
    assert sparse.sparse and len(sparse.pair_joint) < model.v_template.shape[0] / 3
    params = random_params(model, batch=3, seed=1)
    full = model(params)
    landmarks, joints = sparse(params)
    assert (joints - full.joints).abs().max() < 1e-10
    for name, points in landmarks.items():
        assert (points - full.landmarks[name]).abs().max() < 1e-10, name
    # Gradients too, with the shape per subject as the tracker has it.
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    leaves["betas"] = params["betas"][:1].clone().requires_grad_(True)
    weights = {name: torch.randn_like(points) for name, points in landmarks.items()}
    expanded = {**leaves, "betas": leaves["betas"].expand(3, -1)}
    gradients = []
    for outputs in (sparse(leaves)[0], model(expanded).landmarks):
        loss = sum((outputs[name] * weight).sum() for name, weight in weights.items())
        gradients.append(torch.autograd.grad(loss, list(leaves.values()), allow_unused=True))
    for name, ours, theirs in zip(leaves, *gradients, strict=True):
        ours = torch.zeros_like(leaves[name]) if ours is None else ours
        theirs = torch.zeros_like(leaves[name]) if theirs is None else theirs
        assert (ours - theirs).abs().max() < 1e-9, name


def test_landmark_model_computes_only_the_sets_asked_for(open_model):
    everything = LandmarkModel(open_model)
    pose_only = LandmarkModel(open_model, ["mediapipe_pose33"])
    assert len(pose_only.pair_joint) < 0.7 * len(everything.pair_joint)
    params = random_params(open_model, batch=2, seed=4)
    landmarks, _ = pose_only(params)
    assert list(landmarks) == ["mediapipe_pose33"]
    assert (landmarks["mediapipe_pose33"] - everything(params)[0]["mediapipe_pose33"]).abs().max(
    ) < 1e-10
    with pytest.raises(KeyError, match="no landmark set"):
        LandmarkModel(open_model, ["mediapipe_pose34"])


def test_landmark_model_with_no_sets_gives_the_joints_alone(open_model):
    params = random_params(open_model, 3, seed=5)
    landmarks, joints = LandmarkModel(open_model, [])(params)
    assert landmarks == {}
    assert torch.allclose(joints, open_model(params).joints, atol=1e-8)


def test_head_model_assets_fall_back_to_the_full_forward(ehm_model):
    sparse = LandmarkModel(ehm_model)
    params = random_params(ehm_model, batch=2, seed=2)
    landmarks, joints = sparse(params)
    assert not sparse.sparse
    assert torch.equal(joints, ehm_model(params).joints)


def test_procrustes_alignment_removes_similarity_transforms():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 3))
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    moved = 1.7 * points @ rotation.T + [1.0, -2.0, 0.5]
    np.testing.assert_allclose(procrustes_align(moved, points), points, atol=1e-12)
    assert pa_error_mm(moved[None], points[None]) < 1e-9


# The procedural clips turn every joint at random, unlike people: the learned pose prior,
# which knows how people move, is off in the tests of fitting them (tests/test_priors.py has
# it on human motion).
NO_LEARNED_PRIOR = {"learned_pose_prior": 0.0, "learned_hand_prior": 0.0}
# Their bodies also float: feet drift slowly at any height with no floor to stand on, which the
# contact stage would take for planted feet and pin (the noise-free clip: 17.9 mm without it,
# 20.9 with 300 contact steps), so they are fitted as `--no-contact` fits; tests/test_contact.py
# fits walks with it.
FLOATING = {**NO_LEARNED_PRIOR, "contact": 0.0}


@pytest.fixture(scope="module")
def fitted(open_asset):
    clip = make_clip(BodyModel(open_asset), frames=24, seed=3)
    tracker = Tracker(BodyModel(open_asset), TrackerConfig(focal=clip.focal, **FLOATING))
    return clip, tracker.fit(clip.keypoints), BodyModel(open_asset).double()


def _posed(model, result):
    params = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in result.params.items()}
    with torch.no_grad():
        return model(params)


def test_tracker_recovers_a_noise_free_clip(fitted, open_asset):
    clip, result, model = fitted
    out = _posed(model, result)
    # Every detected part lands within a few pixels of its keypoints ...
    assert max(result.reprojection_px.values()) < 8.0, result.reprojection_px
    # ... and the 3D body is close: the 20 mm on noise-free input (this clip: 17 mm,
    # hands 4.7 mm). What remains is depth: a limb turned slightly toward or away from the
    # camera projects alike (docs/tracker.md).
    body = pa_error_mm(out.joints.numpy()[:, :22], clip.joints[:, :22])
    hands = np.flatnonzero(open_asset.arrays["lbs_weights"][:, 25:55].sum(1) > 0.5)
    hand = pa_error_mm(out.vertices.numpy()[:, hands], clip.vertices[:, hands])
    assert body < 20.0 and hand < 7.0, (body, hand)
    # The camera is found up to the size/distance ambiguity of one view: distance over body
    # height matches.
    def height(joints):
        return np.ptp(joints[:, :, 1], axis=1)

    fitted_ratio = result.cam_t[:, 2] / height(out.joints.numpy())
    true_ratio = clip.cam_t[:, 2].numpy() / height(clip.joints)
    assert np.abs(fitted_ratio / true_ratio - 1).mean() < 0.1


def test_a_known_principal_point_places_the_body_where_the_camera_saw_it(open_asset):
    """Footage whose principal point is off the image centre (a cropped or shifted sensor): fit
    with it, the body is in the direction from the camera it was in; assumed at the centre,
    the keypoints are matched about as well but the body is turned off by the shift over the
    focal length (here 100 px / 1100 px: 0.09 in x/z and y/z, ~0.3 m sideways at 3.2 m).
    Directions, not positions: how far along them the body is stays ambiguous in one view."""
    principal = (460.0, 540.0)  # the 720 x 1280 image's centre is (360, 640)
    clip = make_clip(BodyModel(open_asset), frames=3, seed=6, center=principal)
    model = BodyModel(open_asset).double()

    def directions(joints):  # x/z, y/z of each body joint in the camera frame
        return joints[..., :2] / joints[..., 2:]

    true = directions(to_camera(torch.as_tensor(clip.joints[:, :22]), clip.cam_t))
    errors, fits = {}, {}
    for label, center in (("given", principal), ("image centre", None)):
        config = TrackerConfig(focal=clip.focal, center=center, iterations=(30, 60, 30))
        fits[label] = fit = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
        joints = to_camera(_posed(model, fit).joints[:, :22],
                           torch.as_tensor(fit.cam_t, dtype=torch.float64))
        errors[label] = float((directions(joints) - true).norm(dim=-1).mean())
    assert fits["given"].center == principal and fits["image centre"].center == (360.0, 640.0)
    assert errors["given"] < 0.02 and errors["image centre"] > 0.1, errors
    assert fits["given"].reprojection_px["pose"] < fits["image centre"].reprojection_px["pose"] \
        + 0.5, (fits["given"].reprojection_px, fits["image centre"].reprojection_px)


def test_missing_hands_and_face_fall_back_to_priors(open_asset):
    clip = make_clip(BodyModel(open_asset), frames=16, seed=4, noise_px=1.0, drop_rate=0.5)
    for part in ("left_hand", "right_hand", "face"):
        clip.keypoints.parts[part][:, :, 2] = 0.0  # never seen
    config = TrackerConfig(focal=clip.focal, iterations=(40, 80, 40))
    result = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
    assert set(result.reprojection_px) == {"pose"}
    # Unseen parts stay near rest instead of drifting: hands relaxed, face neutral.
    assert np.abs(result.params["left_hand_pose"]).max() < 0.5
    assert np.abs(result.params["expression"]).max() < 0.2
    assert np.isfinite(result.cam_t).all()


def test_a_schedule_may_skip_stages(open_asset):
    """Zero steps leave a stage out (a live frame fitted without its hands and face stage, or
    with no first stage); the stages that ran report their losses."""
    clip = make_clip(BodyModel(open_asset), frames=2, seed=6)
    for iterations in ((0, 6, 0), (2, 4, 0)):
        config = TrackerConfig(focal=clip.focal, iterations=iterations, contact=0.0)
        result = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
        assert len(result.stage_losses) == sum(n > 0 for n in iterations)
        assert np.isfinite(result.stage_losses).all()
        assert np.abs(result.params["body_pose"]).max() > 0  # the body stage ran
        np.testing.assert_array_equal(result.params["right_hand_pose"], 0)  # the hands' did not


def test_a_held_subject_is_not_fitted(open_asset):
    """Later chunks of a clip keep the body an earlier chunk found."""
    clip = make_clip(BodyModel(open_asset), frames=6, seed=5)
    betas = clip.params["betas"][:1].numpy()
    config = TrackerConfig(focal=clip.focal, iterations=(10, 10, 10),
                           subject={"betas": betas.ravel().tolist()})
    result = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
    np.testing.assert_array_equal(result.params["betas"], betas.astype(np.float32))
    assert np.abs(result.params["body_pose"]).max() > 0  # the rest was fitted

    for subject, message in (({"body_pose": [0.0] * 63}, "'body_pose' is not a per-subject"),
                             ({"betas": [0.0, 1.0]}, "'betas' has 2 values")):
        with pytest.raises(ValueError, match=message):
            Tracker(BodyModel(open_asset), TrackerConfig(subject=subject)).fit(clip.keypoints)


def test_a_rough_start_lets_a_shorter_schedule_match_the_full_fit(fitted, open_asset):
    """What `regressor+tracker` relies on: from an estimate like a regressor's (every rotation
    ~0.15 rad off, the camera ~10% off in depth), a third of the steps fits as well as the full
    schedule from the rest pose; without the start, the short schedule does not."""
    clip, full, model = fitted
    start = rough_start(clip, seed=1)
    body = {}
    for label, initial in (("refined", start), ("short from rest", None)):
        config = TrackerConfig(focal=clip.focal, initial=initial,
                               **{**FLOATING, "iterations": REFINE_ITERATIONS})
        result = Tracker(BodyModel(open_asset), config).fit(clip.keypoints)
        body[label] = pa_error_mm(_posed(model, result).joints.numpy()[:, :22],
                                  clip.joints[:, :22])
    body["full"] = pa_error_mm(_posed(model, full).joints.numpy()[:, :22], clip.joints[:, :22])
    assert sum(REFINE_ITERATIONS) <= 0.35 * sum(ITERATIONS_WITHOUT_CONTACT)  # the full fit's
    assert body["refined"] < body["full"] + 2.0, body
    assert body["refined"] < body["short from rest"] - 5.0, body

    with pytest.raises(ValueError, match=r"initial 'body_pose' has shape \(2, 21, 3\)"):
        config = TrackerConfig(initial={"body_pose": np.zeros((2, 21, 3))})
        Tracker(BodyModel(open_asset), config).fit(clip.keypoints)


def test_the_tracker_leaves_the_callers_model_as_it_was(open_model):
    """The tracker runs in float32 on its own copy; the caller's float64 model is unchanged."""
    before = open_model.v_template.dtype
    tracker = Tracker(open_model, TrackerConfig())
    assert tracker.model.v_template.dtype == torch.float32
    assert open_model.v_template.dtype == before == torch.float64


def test_body_pa_mm_scores_the_body_joints_of_parameters_against_the_truth(open_asset):
    model = BodyModel(open_asset).double()
    clip = make_clip(BodyModel(open_asset), frames=3, seed=4)
    truth = {k: np.asarray(v) for k, v in clip.params.items()}
    assert body_pa_mm(model, truth, clip.joints) < 1e-6
    bent = dict(truth, body_pose=truth["body_pose"] + 0.2)
    assert body_pa_mm(model, bent, clip.joints) > 20.0


def test_a_clip_strides_as_far_as_its_own_legs_reach(open_asset, open_model):
    """A motion's root travel is retargeted at the mean shape's legs: a clip of a body with
    other legs scales it by their length, so feet planted in the capture stay planted."""
    from backend.mocap.retarget import leg_length

    frames = 4
    travel = np.linspace([0.0, 0.0, 0.0], [0.0, 0.0, 0.9], frames)  # forward, model axes
    motion = {"global_orient": np.zeros((frames, 3)), "body_pose": np.zeros((frames, 21, 3)),
              "transl": travel}
    clip = make_clip(BodyModel(open_asset), frames=frames, seed=2, motion=motion)
    names = open_model.joint_names
    with torch.no_grad():
        mean = open_model(open_model.default_params(1)).rest_joints[0].numpy()
        own = open_model({**open_model.default_params(1), "betas": clip.params["betas"]}
                         ).rest_joints[0].numpy()
    legs = (leg_length(lambda joint: own[names.index(joint)])
            / leg_length(lambda joint: mean[names.index(joint)]))
    assert abs(legs - 1) > 0.02  # the clip's body is not the mean shape
    moved = clip.cam_t[-1] - clip.cam_t[0]
    # Forward in the model (+z) is toward the camera (-z in camera axes).
    np.testing.assert_allclose(moved.numpy(), [0.0, 0.0, -0.9 * legs], atol=1e-9)


def test_a_walk_toward_and_across_the_camera_stays_in_the_frame(open_asset):
    """A performer's travel is framed: 3 m toward the camera and 1 m sideways start far enough
    back and centred that every body point stays in the image, with the nearest frame at the
    usual distance (unframed, this walk ends behind the lens)."""
    frames = 6
    travel = np.linspace([0.0, 0.0, 0.0], [1.0, 0.0, 3.0], frames)  # sideways and forward
    motion = {"global_orient": np.zeros((frames, 3)), "body_pose": np.zeros((frames, 21, 3)),
              "transl": travel}
    clip = make_clip(BodyModel(open_asset), frames=frames, seed=2, motion=motion,
                     size=(720, 1280), focal=1100.0)
    pose = clip.keypoints.parts["pose"]
    assert (pose[..., 0] > 0).all() and (pose[..., 0] < 720).all()
    assert (pose[..., 1] > 0).all() and (pose[..., 1] < 1280).all()
    depth = clip.cam_t[:, 2].numpy()
    assert depth.min() == pytest.approx(3.2) and depth[0] > depth[-1] + 2.0
    sideways = clip.cam_t[:, 0].numpy()
    assert sideways.min() == pytest.approx(-sideways.max() + 0.1)  # centred on the path


def test_a_clip_turned_around_is_the_same_motion_seen_from_behind(open_asset, open_model):
    """``turned(clip, 180, n)``: every joint swings half a turn about the root's vertical line,
    so the body's left is where its right was; the pose within the body is unchanged."""
    clip = make_clip(BodyModel(open_asset), frames=5, seed=1)
    params = turned(clip, 180.0, 3)
    assert params["body_pose"].shape[0] == 3 and params["betas"].shape[0] == 1
    torch.testing.assert_close(params["body_pose"], clip.params["body_pose"][:3])
    with torch.no_grad():
        joints = open_model.converted(torch.float64)(params).joints.numpy()
    before = clip.joints[:3] - clip.joints[:3, :1]
    half_turn = np.diag([-1.0, 1.0, -1.0])  # about the model's up axis (y)
    np.testing.assert_allclose(joints - joints[:, :1], before @ half_turn.T, atol=1e-6)


def test_hinge_limits_start_at_a_straight_limb_whatever_the_rest_pose(open_model, smplx_model):
    """The open asset's arms rest bent ~42 degrees: its straight arm is negative flexion from
    rest, and must cost nothing (the limit at rest's own bend kept fitted arms from ever
    straightening: elbows 38 mm off on a walk). Bending backward past straight still costs."""
    from backend.tracking.priors import hinge_axes, joint_limit_loss, rest_flexion

    rest_bends = {}
    for label, model in (("open", open_model), ("smplx", smplx_model)):
        with torch.no_grad():
            rest = model(model.default_params(1)).rest_joints[0]
        names = model.joint_names
        axes = hinge_axes(rest, names)
        bent = rest_flexion(rest, names, axes)
        elbow = names.index("left_elbow")
        rest_bends[label] = bent[elbow]
        bend = torch.tensor([bent[elbow]], dtype=torch.float64)
        bounds = torch.full((1,), 10.0, dtype=torch.float64)
        axis = axes[elbow]

        def cost(flexion_from_straight: float, axis=axis, bend=bend, bounds=bounds) -> float:
            local = ((flexion_from_straight - bend) * axis).reshape(1, 1, 3)
            return float(joint_limit_loss(local, bounds, {0: axis}, bend))

        # The posed arm really is straight at that flexion (within a few degrees: the bend
        # does not lie exactly in the plane across the hinge axis).
        local_pose = model.default_params(1)
        local_pose["body_pose"][0, elbow - 1] = -bent[elbow] * axes[elbow]
        with torch.no_grad():
            joints = model(local_pose).joints[0]
        upper = joints[elbow] - joints[names.index("left_shoulder")]
        lower = joints[names.index("left_wrist")] - joints[elbow]
        assert torch.nn.functional.cosine_similarity(upper, lower, dim=0) > 0.995  # < 6 deg
        assert cost(0.0) < 1e-12 and cost(1.0) < 1e-12
        assert cost(-0.3) > 0.5
    assert np.degrees(rest_bends["open"]) > 30 and abs(np.degrees(rest_bends["smplx"])) < 10

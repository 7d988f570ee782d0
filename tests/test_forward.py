"""The EHM forward: parity with the smplx package, and the properties the design relies on."""

import numpy as np
import pytest
import torch

from backend.body.asset import Asset
from backend.body.errors import ParameterError
from backend.body.joint_names import SMPLX_PARENTS
from backend.body.model import BodyModel
from backend.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from .conftest import cuda_available, random_params

smplx = pytest.importorskip("smplx")


def _smplx_reference(model_files, dtype=torch.float64):
    return smplx.SMPLX(str(model_files.smplx), num_betas=10, num_expression_coeffs=10,
                       use_pca=False, flat_hand_mean=True, dtype=dtype)


def _as_smplx_kwargs(params):
    kwargs = {k: v.flatten(1) for k, v in params.items() if k not in ("eye_pose",
                                                                      "joints_offset")}
    kwargs["leye_pose"], kwargs["reye_pose"] = params["eye_pose"].flatten(1).split(3, dim=1)
    return kwargs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_smplx_package(model_files, smplx_model, seed):
    reference = _smplx_reference(model_files)
    params = random_params(smplx_model, batch=3, seed=seed, scale=0.5, skip=("joints_offset",))
    ours = smplx_model(params)
    theirs = reference(**_as_smplx_kwargs(params))
    assert (ours.vertices - theirs.vertices).abs().max() < 1e-5
    assert (ours.joints - theirs.joints[:, :55]).abs().max() < 1e-5


def test_matches_smplx_package_in_float32(model_files, smplx_asset):
    reference = _smplx_reference(model_files, torch.float32)
    model = BodyModel(smplx_asset)
    params = {k: v.float() for k, v in random_params(model, 4, seed=7, scale=0.5,
                                                      skip=("joints_offset",)).items()}
    ours, theirs = model(params), reference(**_as_smplx_kwargs(params))
    assert (ours.vertices - theirs.vertices).abs().max() < 1e-5


@pytest.fixture(params=["smplx", "ehm", "open"])
def asset_and_model(request):
    """The generic properties hold for every asset kind."""
    name = request.param
    return request.getfixturevalue(f"{name}_asset"), request.getfixturevalue(f"{name}_model")


@pytest.mark.parametrize("kind", ["smplx", "open"])
def test_zero_parameters_give_the_template(request, kind):
    asset, model = (request.getfixturevalue(f"{kind}_{x}") for x in ("asset", "model"))
    out = model(model.default_params(2))
    expected = torch.as_tensor(asset.arrays["v_template"], dtype=torch.float64)
    # Exact up to the float32-stored skinning weights summing to 1 within ~1e-7.
    assert (out.vertices - expected).abs().max() < 1e-6


def test_zero_parameters_give_the_ehm_template(ehm_model, ehm_asset):
    """GUAVA's template: FLAME's eye midpoint moved onto SMPL-X's, written at the ids."""
    a = {k: v.astype(np.float64) for k, v in ehm_asset.arrays.items()}
    body_eyes = (a["J_regressor"] @ a["v_template"])[[23, 24]].mean(0)
    head_eyes = (a["head_J_regressor"] @ a["head_v_template"])[[3, 4]].mean(0)
    expected = a["v_template"].copy()
    expected[a["head_vertex_ids"].astype(int)] = a["head_v_template"] - head_eyes + body_eyes
    out = ehm_model(ehm_model.default_params(1))
    np.testing.assert_allclose(out.vertices[0].numpy(), expected, atol=1e-6)


def _without_posedirs(asset: Asset) -> BodyModel:
    arrays = {k: v for k, v in asset.arrays.items() if k != "posedirs"}
    return BodyModel(Asset(arrays=arrays, meta=asset.meta, landmarks=asset.landmarks)).double()


def _descendants(joint: int) -> set[int]:
    found = {joint}
    for child, parent in enumerate(SMPLX_PARENTS):
        if parent in found or child == joint:
            found.add(child)
    return found


@pytest.mark.parametrize("joint", [4, 18, 21, 16, 28])
@pytest.mark.parametrize("kind", ["smplx", "open"])
def test_a_joint_moves_only_what_it_and_its_descendants_carry(request, kind, joint):
    # Pose correctives are global by design, so the locality check uses pure LBS.
    asset = request.getfixturevalue(f"{kind}_asset")
    model = _without_posedirs(asset)
    base = model.default_params(1)
    moved = {k: v.clone() for k, v in base.items()}
    # Find which parameter drives the joint and rotate it.
    for name, joints in model.pose_joints.items():
        if joint in joints:
            moved[name][0, joints.index(joint)] = torch.tensor([0.4, -0.3, 0.5])
    delta = (model(moved).vertices - model(base).vertices).norm(dim=-1)[0]
    weights = torch.as_tensor(asset.arrays["lbs_weights"])
    carried = weights[:, sorted(_descendants(joint))].sum(1) > 0
    assert delta[~carried].max() < 1e-12
    assert delta[carried].max() > 1e-3


def test_eye_midpoint_alignment_for_random_head_shapes_and_scales(ehm_model, ehm_asset):
    params = random_params(ehm_model, batch=5, seed=3)
    # Posing the face moves the vertices FLAME regresses its eye joints from; the alignment is
    # defined on the shaped, expressive head before jaw/eye/eyelid articulation.
    for name in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "transl",
                 "jaw_pose", "eye_pose", "eyelids"):
        params[name] = torch.zeros_like(params[name])
    params["head_scale"] = 0.7 + 0.6 * torch.rand(5, 3, dtype=torch.float64)
    out = ehm_model(params)
    a = ehm_asset.arrays
    ids = torch.as_tensor(a["head_vertex_ids"]).long()
    head_regressor = torch.as_tensor(a["head_J_regressor"], dtype=torch.float64)
    head_eyes = (head_regressor @ out.vertices[:, ids])[:, [3, 4]].mean(1)
    # The body's eye midpoint from the shaped template before the swap, ΔJ included.
    regressor = torch.as_tensor(a["J_regressor"], dtype=torch.float64)
    shapedirs = torch.as_tensor(a["shapedirs"], dtype=torch.float64)
    shaped = torch.as_tensor(a["v_template"], dtype=torch.float64) + torch.einsum(
        "vck,bk->bvc", shapedirs, params["betas"])
    body_eyes = ((regressor @ shaped) + params["joints_offset"])[:, [23, 24]].mean(1)
    assert (head_eyes - body_eyes).abs().max() < 1e-7


def test_head_scale_scales_the_head_about_the_eye_midpoint(ehm_model, ehm_asset):
    ids = torch.as_tensor(ehm_asset.arrays["head_vertex_ids"]).long()
    base = ehm_model(ehm_model.default_params(1)).vertices[0, ids]
    params = ehm_model.default_params(1)
    params["head_scale"] = torch.tensor([[1.2, 0.9, 1.1]], dtype=torch.float64)
    scaled = ehm_model(params).vertices[0, ids]
    extent = lambda v: v.max(0).values - v.min(0).values  # noqa: E731
    np.testing.assert_allclose((extent(scaled) / extent(base)).numpy(), [1.2, 0.9, 1.1],
                               rtol=1e-7)


@pytest.mark.parametrize("changed", ["expression", "jaw_pose", "eye_pose", "eyelids", "shape"])
def test_face_parameters_move_only_the_head_region(ehm_model, ehm_asset, changed):
    base = ehm_model.default_params(1)
    params = {k: v.clone() for k, v in base.items()}
    params[changed] = params[changed] + 0.3
    delta = (ehm_model(params).vertices - ehm_model(base).vertices).norm(dim=-1)[0]
    in_head = torch.zeros(delta.shape[0], dtype=torch.bool)
    in_head[torch.as_tensor(ehm_asset.arrays["head_vertex_ids"]).long()] = True
    assert delta[~in_head].max() < 1e-15
    assert delta[in_head].max() > 1e-4


def test_expression_moves_only_the_face_in_plain_smplx(smplx_model, smplx_asset):
    base = smplx_model.default_params(1)
    params = dict(base, expression=torch.ones(1, 10, dtype=torch.float64))
    delta = (smplx_model(params).vertices - smplx_model(base).vertices).norm(dim=-1)[0]
    in_head = torch.zeros(delta.shape[0], dtype=torch.bool)
    in_head[torch.as_tensor(smplx_asset.arrays["head_vertex_ids"]).long()] = True
    assert delta[~in_head].max() < 1e-15 and delta.max() > 1e-3


def _chain_reference(rest: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Posed joints by walking the tree one joint at a time (independent of KinematicChain)."""
    world_rot, world_pos = [None] * 55, [None] * 55
    for j, parent in enumerate(SMPLX_PARENTS):
        if parent < 0:
            world_rot[j], world_pos[j] = local[j], rest[j]
        else:
            world_rot[j] = world_rot[parent] @ local[j]
            world_pos[j] = world_pos[parent] + world_rot[parent] @ (rest[j] - rest[parent])
    return torch.stack(world_pos)


def test_joint_offsets_are_added_to_the_regressed_joints(smplx_model):
    params = random_params(smplx_model, batch=2, seed=5)
    without = dict(params, joints_offset=torch.zeros_like(params["joints_offset"]))
    moved = smplx_model(params).rest_joints - smplx_model(without).rest_joints
    assert (moved - params["joints_offset"]).abs().max() < 1e-12


def test_joint_offsets_move_the_skeleton_used_by_skinning(ehm_model):
    params = random_params(ehm_model, batch=1, seed=5)
    params["transl"] = torch.zeros(1, 3, dtype=torch.float64)
    without = dict(params, joints_offset=torch.zeros_like(params["joints_offset"]))
    out, out0 = ehm_model(params), ehm_model(without)
    # Posed joints follow the kinematic chain built on those offset joints.
    local = torch.zeros(55, 3, dtype=torch.float64)
    for name, joints in ehm_model.pose_joints.items():
        local[joints] = params[name][0]
    expected = _chain_reference(out.rest_joints[0], axis_angle_to_matrix(local))
    assert (out.joints[0] - expected).abs().max() < 1e-9
    # ... and the mesh moves with them.
    assert (out.vertices - out0.vertices).abs().max() > 1e-3


def test_batch_of_n_equals_n_singles(asset_and_model):
    _, model = asset_and_model
    params = random_params(model, batch=4, seed=11)
    batched = model(params)
    for i in range(4):
        single = model({k: v[i:i + 1] for k, v in params.items()})
        assert (batched.vertices[i] - single.vertices[0]).abs().max() < 1e-10
        assert (batched.joints[i] - single.joints[0]).abs().max() < 1e-10


@pytest.mark.parametrize("at_zero", [False, True])
def test_gradients_are_finite_and_match_finite_differences(asset_and_model, at_zero):
    _, model = asset_and_model
    params = random_params(model, batch=1, seed=13, scale=0.0 if at_zero else 0.4)
    weights = torch.randn(1, model.v_template.shape[0], 3, dtype=torch.float64)

    def loss(p):
        out = model(p)
        return (out.vertices * weights).sum() + out.joints.square().sum()

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss(leaves).backward()
    generator = torch.Generator().manual_seed(1)
    for name, leaf in leaves.items():
        assert torch.isfinite(leaf.grad).all(), name
        direction = torch.randn(leaf.shape, generator=generator, dtype=torch.float64)
        eps = 1e-6
        plus = loss(dict(params, **{name: params[name] + eps * direction}))
        minus = loss(dict(params, **{name: params[name] - eps * direction}))
        numeric = ((plus - minus) / (2 * eps)).item()
        analytic = (leaf.grad * direction).sum().item()
        assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), name


def test_landmarks_follow_the_mesh(smplx_model, smplx_asset, model_files):
    params = random_params(smplx_model, batch=2, seed=2)
    out = smplx_model(params)
    lmk = smplx_asset.landmarks["smplx_face_static"]
    with np.load(model_files.smplx) as data:
        tri = smplx_asset.arrays["faces"][data["lmk_faces_idx"].astype(np.int64)]
    bary = torch.as_tensor(lmk.weights, dtype=torch.float64)
    expected = (out.vertices[:, torch.as_tensor(tri).long()] * bary[None, :, :, None]).sum(2)
    assert (out.landmarks["smplx_face_static"] - expected).abs().max() < 1e-12


def test_wrong_parameters_name_the_problem(ehm_model):
    with pytest.raises(ParameterError, match=r"body_pose: expected shape \(B, 21, 3\)"):
        ehm_model(body_pose=torch.zeros(1, 20, 3))
    with pytest.raises(ParameterError, match="unknown parameter.*'pose'"):
        ehm_model(pose=torch.zeros(1, 3))
    with pytest.raises(ParameterError, match="disagree on the batch size"):
        ehm_model(betas=torch.zeros(2, 10), transl=torch.zeros(3, 3))


def test_flat_and_structured_shapes_are_equivalent(asset_and_model):
    _, model = asset_and_model
    params = random_params(model, batch=2, seed=4)
    flat = {k: v.flatten(1) for k, v in params.items()}
    assert torch.equal(model(params).vertices, model(flat).vertices)


def test_float32_agrees_with_float64(asset_and_model):
    asset, model = asset_and_model
    params = random_params(model, batch=2, seed=6)
    single = BodyModel(asset)(params)
    assert single.vertices.dtype == torch.float32
    assert (single.vertices.double() - model(params).vertices).abs().max() < 1e-5


def test_rotation_conversions_round_trip():
    generator = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(200, 3, generator=generator,
                                                     dtype=torch.float64), dim=1)
    angles = torch.cat([torch.tensor([0.0, 1e-9, 1e-5, 3.1, 3.14159]),
                        torch.rand(195, generator=generator) * 3.1]).double()
    aa = axis * angles[:, None]
    matrix = axis_angle_to_matrix(aa)
    eye = torch.eye(3, dtype=torch.float64)
    assert (matrix @ matrix.transpose(1, 2) - eye).abs().max() < 1e-12
    assert (matrix_to_axis_angle(matrix) - aa).abs().max() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_to_axis_angle_has_finite_gradients_at_rest_and_half_turns(dtype):
    # A network's rotations pass through it in training: one NaN gradient (acos at the
    # identity, which float32 reaches for any angle below ~3e-4) poisons every weight.
    from backend.body.rotations import rotation_6d_to_matrix

    six = torch.tensor([[1, 0, 0, 0, 1, 0], [1, 1e-5, 0, 0, 1, 0], [1, 1e-9, 0, 0, 1, 1e-9],
                        [-1, 0, 0, 0, -1, 0], [1, 0, 0, 0, -1, 1e-6],
                        [0.3, 0.2, 0.9, -0.5, 0.8, 0.1]], dtype=dtype, requires_grad=True)
    matrix = rotation_6d_to_matrix(six)
    matrix_to_axis_angle(matrix).square().sum().backward()
    assert torch.isfinite(six.grad).all()
    assert (axis_angle_to_matrix(matrix_to_axis_angle(matrix)) - matrix).abs().max() < 1e-5


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(ehm_asset):
    params = random_params(BodyModel(ehm_asset), batch=8, seed=9)
    cpu = BodyModel(ehm_asset).double()(params)
    gpu = BodyModel(ehm_asset).double().cuda()({k: v.cuda() for k, v in params.items()})
    assert (gpu.vertices.cpu() - cpu.vertices).abs().max() < 1e-9


def test_converted_copies_instead_of_changing_the_callers_model(smplx_model):
    assert smplx_model.converted(torch.float64) is smplx_model
    single = smplx_model.converted(torch.float32)
    assert single is not smplx_model and single.v_template.dtype == torch.float32
    assert smplx_model.v_template.dtype == torch.float64  # the caller's model is untouched
    params = random_params(smplx_model, 2, seed=4)
    expected = smplx_model(params).vertices
    got = single({k: v.float() for k, v in params.items()}).vertices
    assert torch.allclose(got.double(), expected, atol=1e-4)

"""The add-on's coordinate conversion and keyframe math, checked against the body model
without Blender: Blender's pose-bone formulas, written out in numpy, must skin the rig to the
model's own posed mesh, placed where the camera sees it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pear_recover_mesh.convert import (
    CAMERA_TO_WORLD,
    MODEL_TO_WORLD,
    axis_angle_to_matrix,
    continuous,
    matrix_to_quaternion,
    points_to_world,
    quaternion_to_matrix,
)
from pear_recover_mesh.keyframes import Keyframes, clip_keyframes, crossfade

from backend.body.rotations import axis_angle_to_matrix as torch_axis_angle
from backend.camera import MODEL_TO_CAMERA
from backend.pipeline.rig import build_rig


def _random_rotations(rng, count: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


def test_the_model_to_camera_convention_is_the_backends():
    assert np.array_equal(np.asarray(MODEL_TO_CAMERA, float),
                          np.linalg.inv(CAMERA_TO_WORLD) @ MODEL_TO_WORLD)
    assert np.allclose(MODEL_TO_WORLD @ [0, 1, 0], [0, 0, 1])  # up is up
    assert np.allclose(MODEL_TO_WORLD @ [0, 0, 1], [0, -1, 0])  # facing the camera


def test_rotation_helpers_agree_with_the_backend():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 3)) * 1.5
    ours = axis_angle_to_matrix(vectors)
    reference = torch_axis_angle(torch.as_tensor(vectors)).numpy()
    assert np.abs(ours - reference).max() < 1e-12
    rotations = _random_rotations(rng, 500)
    assert np.abs(quaternion_to_matrix(matrix_to_quaternion(rotations)) - rotations).max() < 1e-12
    flipped = continuous(np.array([[1.0, 0, 0, 0], [-0.99, 0.1, 0, 0]]))
    assert flipped[1, 0] > 0


def _blender_skin(rig: dict, bone_rest: np.ndarray, heads: np.ndarray, keys) -> np.ndarray:
    """Blender's armature deform, in numpy: M_j = M_p Rest_p^-1 Rest_j Basis_j, vertices moved
    by sum_j w_j M_j Rest_j^-1 after the shape keys."""
    joints, frames = len(rig["parents"]), len(keys.frames)
    rest = np.tile(np.eye(4), (joints, 1, 1))
    rest[:, :3, :3], rest[:, :3, 3] = bone_rest, heads
    vertices = points_to_world(rig["vertices"])[None] + np.einsum(
        "te,evc->tvc", keys.shape_keys, rig["expression_deltas"] @ MODEL_TO_WORLD.T)
    out = np.zeros_like(vertices)
    for t in range(frames):
        pose = np.zeros((joints, 4, 4))
        for j in range(joints):
            basis = np.eye(4)
            basis[:3, :3] = quaternion_to_matrix(keys.rotations[t, j])
            if j == 0:
                basis[:3, 3] = keys.root_location[t]
            parent = rig["parents"][j]
            above = np.eye(4) if parent < 0 else pose[parent] @ np.linalg.inv(rest[parent])
            pose[j] = above @ rest[j] @ basis
        skin = pose @ np.linalg.inv(rest)
        weights = np.zeros((len(vertices[t]), joints))
        weights[rig["weight_vertex"], rig["weight_joint"]] = rig["weight_value"]
        moved = np.einsum("jab,vb->vja", skin[:, :3, :3], vertices[t]) + skin[:, :3, 3]
        out[t] = np.einsum("vj,vja->va", weights, moved)
    return out


@pytest.mark.parametrize("asset_name", ["open_asset", "smplx_asset"])
def test_keyframes_pose_blenders_armature_like_the_model(asset_name, request):
    asset = request.getfixturevalue(asset_name)
    from backend.body.model import BodyModel

    model = BodyModel(asset).double()
    rng = np.random.default_rng(1)
    frames = 3
    params = {k: v.numpy() for k, v in model.default_params(frames).items()}
    for name in asset.meta["pose_joints"]:
        params[name] = rng.normal(scale=0.3, size=params[name].shape)
    params["betas"] = rng.normal(scale=0.5, size=params["betas"][:1].shape)
    if "expression" in params:
        params["expression"] = rng.uniform(0, 0.6, size=params["expression"].shape)
    params["transl"] = rng.normal(scale=0.1, size=(frames, 3))
    cam_t = rng.normal(scale=0.2, size=(frames, 3)) + [0, 0, 3]
    rig = build_rig(asset, {"betas": params["betas"]})
    with torch.no_grad():
        posed = model({k: torch.as_tensor(v) for k, v in params.items()}).vertices.numpy()
    expected = posed @ MODEL_TO_WORLD.T + (cam_t @ CAMERA_TO_WORLD.T)[:, None]

    bone_rest = _random_rotations(rng, len(rig["parents"]))  # any bone orientation must work
    keys = clip_keyframes(params, cam_t, rig, bone_rest)
    heads = points_to_world(rig["rest_joints"])
    skinned = _blender_skin(rig, bone_rest, heads, keys)
    if model.posedirs is None and not model.has_head_model:
        assert np.abs(skinned - expected).max() < 1e-5
    else:  # pose correctives and the FLAME head's own jaw are not carried (see pipeline.rig)
        assert np.abs(skinned - expected).mean() < 0.01


def _random_keys(rng, frames: np.ndarray, joints: int = 5, expressions: int = 3) -> Keyframes:
    quaternions = rng.normal(size=(len(frames), joints, 4))
    quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
    return Keyframes(frames, continuous(quaternions), rng.normal(size=(len(frames), 3)),
                     rng.uniform(size=(len(frames), expressions)))


def test_a_later_part_fades_in_over_the_frames_it_shares():
    rng = np.random.default_rng(0)
    earlier = _random_keys(rng, np.arange(1, 11))
    later = _random_keys(rng, np.arange(7, 16))
    joined = crossfade(earlier, later)
    np.testing.assert_array_equal(joined.frames, np.arange(7, 16))
    # Frames 7-10 are shared: later's weight rises 1/5, 2/5, 3/5, 4/5.
    weight = np.array([0.2, 0.4, 0.6, 0.8])[:, None]
    mixed = (1 - weight) * earlier.shape_keys[6:] + weight * later.shape_keys[:4]
    np.testing.assert_allclose(joined.shape_keys[:4], mixed)
    np.testing.assert_allclose(joined.root_location[4:], later.root_location[4:])
    np.testing.assert_allclose(np.linalg.norm(joined.rotations, axis=-1), 1.0)
    # After the shared frames: later's rotations, signs following on from earlier's.
    same = np.abs((joined.rotations[4:] * later.rotations[4:]).sum(-1))
    np.testing.assert_allclose(same, 1.0)
    steps = (joined.rotations[1:] * joined.rotations[:-1]).sum(-1)
    assert ((earlier.rotations[6] * joined.rotations[0]).sum(-1) > 0).all()
    assert (steps[3:] > 0).all()  # the join and beyond: no flips for Blender to spin through


def test_the_same_motion_with_flipped_signs_joins_without_a_jump():
    rng = np.random.default_rng(1)
    earlier = _random_keys(rng, np.arange(1, 11))
    later = Keyframes(earlier.frames[6:], -earlier.rotations[6:], earlier.root_location[6:],
                      earlier.shape_keys[6:])
    joined = crossfade(earlier, later)
    np.testing.assert_allclose(joined.rotations, earlier.rotations[6:], atol=1e-12)


def test_parts_that_share_no_frame_are_not_faded():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="share no frame"):
        crossfade(_random_keys(rng, np.arange(1, 5)), _random_keys(rng, np.arange(5, 9)))

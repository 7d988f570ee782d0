"""Gaussians rigged to the mesh's triangles, and the UV map as surface anchors."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from backend.avatar.rigging import rig, surface_points, vertex_anchors
from backend.avatar.uv import uv_texels
from backend.body.rotations import quaternion_to_matrix

from .conftest import random_params


def _gaussians(faces, count, seed=0):
    g = torch.Generator().manual_seed(seed)
    face_ids = torch.randint(0, len(faces), (count,), generator=g)
    bary = torch.rand(count, 3, generator=g, dtype=torch.float64)
    bary = bary / bary.sum(1, keepdim=True)
    offsets = 0.5 * torch.randn(1, count, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(1, count, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(1, count, 3, generator=g, dtype=torch.float64)
    return face_ids, bary, offsets, quats, scales


def test_rigged_gaussians_move_scale_and_turn_with_the_mesh(open_model, open_asset):
    faces = torch.as_tensor(np.asarray(open_asset.arrays["faces"]), dtype=torch.long)
    vertices = open_model(random_params(open_model, 1, seed=2)).vertices
    gaussians = _gaussians(faces, 200)
    means, quats, scales = rig(vertices, faces, *gaussians)
    turn = torch.as_tensor(Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix())
    shift, zoom = torch.tensor([0.4, -0.1, 2.0], dtype=torch.float64), 1.7
    moved = rig(zoom * vertices @ turn.T + shift, faces, *gaussians)
    np.testing.assert_allclose(moved[0], zoom * means @ turn.T + shift, atol=1e-10)
    np.testing.assert_allclose(quaternion_to_matrix(moved[1]),
                               turn @ quaternion_to_matrix(quats), atol=1e-10)
    np.testing.assert_allclose(moved[2], zoom * scales, atol=1e-12)


def test_a_gaussian_follows_its_triangle_through_random_poses(open_model, open_asset):
    """Triangles skinned to a single joint move rigidly with it; so do their Gaussians."""
    faces = torch.as_tensor(np.asarray(open_asset.arrays["faces"]), dtype=torch.long)
    weights = torch.as_tensor(np.asarray(open_asset.arrays["lbs_weights"]))
    joint = weights.argmax(1)
    rigid = torch.nonzero((weights[faces].max(-1).values > 0.9999).all(1)
                          & (joint[faces] == joint[faces][:, :1]).all(1)).squeeze(1)
    assert len(rigid) > 100
    face_ids, bary, offsets, quats, scales = _gaussians(faces, 100, seed=1)
    face_ids = rigid[face_ids % len(rigid)]
    for seed in range(3):
        params = random_params(open_model, 1, seed=seed, scale=0.5)
        posed = open_model(params)
        means, posed_quats, _ = rig(posed.vertices, faces, face_ids, bary, offsets, quats, scales)
        rest_pose = open_model({**params, **{k: torch.zeros_like(v) for k, v in params.items()
                                             if k.endswith("pose") or k in ("global_orient",
                                                                            "transl")}})
        # Each Gaussian's own joint carries it from the rest pose to the pose.
        transform = posed.joint_transforms[0, joint[faces[face_ids, 0]]]
        rest_transform = rest_pose.joint_transforms[0, joint[faces[face_ids, 0]]]
        relative = transform[..., :3] @ rest_transform[..., :3].transpose(-1, -2)
        rest_means_here, rest_quats_here, _ = rig(rest_pose.vertices, faces, face_ids, bary,
                                                   offsets, quats, scales)
        expected = (relative @ (rest_means_here[0] - rest_transform[..., 3])[..., None])[..., 0] \
            + transform[..., 3]
        np.testing.assert_allclose(means[0], expected, atol=1e-9)
        np.testing.assert_allclose(quaternion_to_matrix(posed_quats[0]),
                                   relative @ quaternion_to_matrix(rest_quats_here[0]), atol=1e-9)


def test_vertex_anchors_sit_on_their_vertices(open_model, open_asset):
    faces = np.asarray(open_asset.arrays["faces"])
    vertices = open_model(random_params(open_model, 1, seed=4)).vertices
    face_ids, bary = vertex_anchors(faces, vertices.shape[1])
    points = surface_points(vertices, torch.as_tensor(faces), torch.as_tensor(face_ids),
                            torch.as_tensor(bary))
    np.testing.assert_allclose(points, vertices, atol=1e-12)


def test_uv_texels_are_where_the_layout_puts_them(open_asset):
    uv, uv_faces = open_asset.arrays["uv_coords"], open_asset.arrays["uv_faces"]
    texels = uv_texels(uv, uv_faces, 64)
    assert 0.2 < len(texels.face_ids) / 64**2 < 1.0  # the layout covers part of the square
    at = (texels.bary[:, :, None] * uv[uv_faces[texels.face_ids]]).sum(1)
    centres = np.stack([(texels.cols + 0.5) / 64, 1 - (texels.rows + 0.5) / 64], -1)
    np.testing.assert_allclose(at, centres, atol=1e-9)
    assert (texels.bary >= -1e-7).all()

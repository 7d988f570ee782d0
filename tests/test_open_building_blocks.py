"""The pure pieces the open build stands on, on data the tests make."""

import numpy as np
import pytest
import torch

from backend.body.build.joint_regressor import fit_joint_regressor
from backend.body.build.open_skeleton import bone_to_joint, merge_weights, rotation_pivot
from backend.body.build.shape_basis import fit_shape_basis, project
from backend.body.joint_names import SMPLX_JOINT_NAMES
from backend.body.rotations import axis_angle_to_matrix
from backend.renderer.mesh_raster import project as pinhole
from backend.renderer.mesh_raster import rasterize


def test_rotation_pivot_recovers_the_centre_of_a_small_rotation():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 3))
    centre = np.array([0.3, -0.2, 1.0])
    omega = np.array([0.0, 0.0, 1e-3])
    # The centre is only defined up to the rotation axis (z here).
    pivot = rotation_pivot(points, np.cross(omega, points - centre))
    np.testing.assert_allclose(pivot[:2], centre[:2], atol=1e-9)
    # A finite rotation: off by the second-order term, about angle * radius / 2.
    rotation = axis_angle_to_matrix(torch.tensor(omega * 50)).numpy()
    moved = (points - centre) @ rotation.T + centre
    np.testing.assert_allclose(rotation_pivot(points, moved - points)[:2], centre[:2],
                               atol=0.05)


def test_shape_basis_matches_pca_of_the_meshes():
    rng = np.random.default_rng(1)
    blendshapes = rng.normal(size=(12, 300))
    coeffs = rng.normal(size=(500, 12)) * np.linspace(3, 0.1, 12)
    basis = fit_shape_basis(coeffs, blendshapes, num_components=5)
    meshes = coeffs @ blendshapes
    centered = meshes - meshes.mean(0)
    singular = np.linalg.svd(centered, compute_uv=False)
    expected_ratio = singular[:5] ** 2 / (singular**2).sum()
    np.testing.assert_allclose(basis.explained_variance_ratio, expected_ratio, rtol=1e-8)
    # Components are orthogonal in vertex space, one standard deviation long.
    components = basis.component_coeffs @ blendshapes
    gram = components @ components.T
    np.testing.assert_allclose(np.diag(gram), singular[:5] ** 2 / 500, rtol=1e-8)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-6 * gram.max()
    # Projection then reconstruction is exact for shapes inside the basis.
    inside = basis.coefficients(rng.normal(size=(3, 5)))
    np.testing.assert_allclose(basis.coefficients(project(basis, inside, blendshapes)) @
                               blendshapes, inside @ blendshapes, atol=1e-9)


def test_joint_regressor_is_exact_on_the_span_and_local():
    rng = np.random.default_rng(2)
    vertices = rng.uniform(-1, 1, size=(2000, 3))
    joints = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    # Joints that move as smooth functions of their neighbourhood along 4 shape directions.
    directions = rng.normal(size=(4, 2000, 3)) * 0.01
    joint_dirs = np.stack([directions[:, np.argsort(np.linalg.norm(vertices - j, axis=1))[:20]]
                           .mean(1) for j in joints], axis=1)
    regressor, residual = fit_joint_regressor(vertices, joints, directions, joint_dirs,
                                              support=100)
    assert residual < 1e-9
    np.testing.assert_allclose(regressor.sum(1), 1.0, atol=1e-9)
    assert ((regressor != 0).sum(1) <= 100).all()
    betas = rng.normal(size=4)
    shaped = vertices + np.tensordot(betas, directions, 1)
    np.testing.assert_allclose(regressor @ shaped, joints + np.tensordot(betas, joint_dirs, 1),
                               atol=1e-9)


def test_unknown_joint_motion_is_pinned_on_the_mean_only():
    rng = np.random.default_rng(3)
    vertices = rng.uniform(-1, 1, size=(500, 3))
    directions = rng.normal(size=(2, 500, 3))
    joint_dirs = np.full((2, 1, 3), np.nan)
    regressor, residual = fit_joint_regressor(vertices, np.zeros((1, 3)), directions, joint_dirs)
    assert residual < 1e-9
    np.testing.assert_allclose(regressor @ vertices, np.zeros((1, 3)), atol=1e-9)


def _toy_rig():
    """A root with a merged child, a mapped spine1 under it, and a twist bone under that."""
    labels = ["root", "pelvis.L", "spine04", "spine04_twist"]
    parents = [-1, 0, 0, 2]
    return labels, parents


def test_merged_bones_go_to_their_nearest_driven_ancestor(monkeypatch):
    from backend.body.build import open_skeleton

    monkeypatch.setattr(open_skeleton, "DRIVEN_BONES", {"pelvis": ["root"],
                                                        "spine1": ["spine04"]})
    labels, parents = _toy_rig()
    carrier = bone_to_joint(labels, parents)
    assert [SMPLX_JOINT_NAMES[j] for j in carrier] == ["pelvis", "pelvis", "spine1", "spine1"]
    weights = np.array([[0.5, 0.2, 0.2, 0.1]])
    merged = merge_weights(weights, carrier)
    assert merged[0, 0] == pytest.approx(0.7) and merged[0, 3] == pytest.approx(0.3)


def test_a_mapping_that_breaks_the_smplx_tree_is_refused(monkeypatch):
    from backend.body.build import open_skeleton

    # spine04 mapped to the knee: its driven ancestor (pelvis) is not the knee's parent (hip).
    monkeypatch.setattr(open_skeleton, "DRIVEN_BONES", {"pelvis": ["root"],
                                                        "left_knee": ["spine04"]})
    labels, parents = _toy_rig()
    with pytest.raises(ValueError, match="drives left_knee but hangs under pelvis"):
        bone_to_joint(labels, parents)


def test_rasterizer_depth_order_and_barycentrics():
    # Two overlapping squares at different depths: the nearer one wins where they overlap.
    square = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=torch.float64)
    near = torch.cat([square - 0.5, torch.full((4, 1), 2.0, dtype=torch.float64)], 1)
    far = torch.cat([2 * square, torch.full((4, 1), 4.0, dtype=torch.float64)], 1)
    vertices = torch.cat([near, far])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    screen = pinhole(vertices, 100.0, (64.0, 64.0))
    fragments = rasterize(screen, faces, 128, 128)
    assert fragments.face[64, 60].item() in (0, 1)  # inside the near square
    assert fragments.face[100, 100].item() in (2, 3)  # only the far square covers this pixel
    assert fragments.face[80, 80].item() in (0, 1)  # both do here: the near one wins
    assert fragments.face[2, 2].item() == -1
    hit = fragments.face >= 0
    np.testing.assert_allclose(fragments.bary[hit].sum(-1).numpy(), 1.0, atol=1e-9)
    # The barycentric point of the winning triangle lands on the pixel centre.
    v, u = 100, 100
    tri = screen[faces[fragments.face[v, u]]]
    point = (fragments.bary[v, u][:, None] * tri[:, :2]).sum(0)
    np.testing.assert_allclose(point.numpy(), [u + 0.5, v + 0.5], atol=1e-9)


def test_closest_point_on_triangles():
    from backend.body.build.landmark_embedding import closest_points_on_triangles, geometric_median

    triangle = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    point, bary = closest_points_on_triangles(np.array([0.2, 0.2, 1.0]), triangle)
    np.testing.assert_allclose(point[0], [0.2, 0.2, 0.0])
    np.testing.assert_allclose(bary[0], [0.6, 0.2, 0.2])
    point, bary = closest_points_on_triangles(np.array([2.0, -1.0, 0.0]), triangle)
    np.testing.assert_allclose(point[0], [1.0, 0.0, 0.0])
    # The geometric median ignores a far outlier that would drag the mean.
    points = np.vstack([np.random.default_rng(0).normal(scale=1e-3, size=(20, 3)), [[5, 5, 5]]])
    assert np.linalg.norm(geometric_median(points)) < 2e-3

"""The Gaussian rasterizer: projection maths, the torch compositor against the brute-force
reference (values and gradients), culling, bad input, and CUDA back ends where CUDA exists."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend.body.rotations import (
    matrix_to_quaternion,
    quaternion_multiply,
    quaternion_to_matrix,
)
from backend.renderer.gaussians import rasterize
from backend.renderer.gaussians.composite import composite
from backend.renderer.gaussians.projection import EPS2D, covariances, project_gaussians
from backend.renderer.gaussians.reference import composite_reference

WIDTH, HEIGHT = 24, 20


def _scene(batch=2, count=40, channels=5, dtype=torch.float32, seed=0, opaque=False):
    """Random Gaussians in front of a camera looking down +z, some overlapping strongly."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(batch, count, 3, generator=g, dtype=dtype) * torch.tensor(
        [1.0, 0.8, 1.5], dtype=dtype) + torch.tensor([-0.5, -0.4, 2.0], dtype=dtype)
    quats = torch.randn(batch, count, 4, generator=g, dtype=dtype)
    scales = 0.02 + 0.08 * torch.rand(batch, count, 3, generator=g, dtype=dtype)
    opacities = torch.rand(batch, count, generator=g, dtype=dtype)
    if opaque:  # enough near-opaque layers that pixels run out of light and stop
        opacities = 0.9 + 0.099 * opacities
    colors = torch.rand(batch, count, channels, generator=g, dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype).repeat(batch, 1, 1)
    viewmats[1:, :3, :3] = torch.as_tensor(Rotation.from_euler("y", 8, degrees=True).as_matrix(),
                                           dtype=dtype)
    Ks = torch.tensor([[30.0, 0, WIDTH / 2], [0, 30.0, HEIGHT / 2], [0, 0, 1]],
                      dtype=dtype).repeat(batch, 1, 1)
    backgrounds = torch.rand(batch, channels, generator=g, dtype=dtype)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=viewmats, Ks=Ks, backgrounds=backgrounds)


def _render(scene, fn):
    splats = project_gaussians(scene["means"], scene["quats"], scene["scales"],
                               scene["opacities"], scene["viewmats"], scene["Ks"], WIDTH, HEIGHT)
    return fn(splats, scene["colors"], WIDTH, HEIGHT, scene["backgrounds"])


def test_quaternions_are_rotations_as_scipy_has_them():
    quats = torch.randn(50, 4, dtype=torch.float64)
    ours = quaternion_to_matrix(quats).numpy()
    xyzw = quats[:, [1, 2, 3, 0]].numpy()
    np.testing.assert_allclose(ours, Rotation.from_quat(xyzw).as_matrix(), atol=1e-12)
    scales = torch.rand(50, 3, dtype=torch.float64)
    cov = covariances(quats, scales)
    np.testing.assert_allclose(torch.linalg.eigvalsh(cov).numpy(),
                               np.sort(scales.numpy() ** 2, axis=1), atol=1e-12)
    # Back to quaternions (w >= 0), half turns included, with finite gradients.
    quats = torch.cat([quats, torch.eye(4, dtype=torch.float64)])
    unit = torch.nn.functional.normalize(quats, dim=-1)
    unit = unit * torch.where(unit[:, :1] < 0, -1.0, 1.0)
    matrices = quaternion_to_matrix(quats).requires_grad_(True)
    back = matrix_to_quaternion(matrices)
    np.testing.assert_allclose(back.detach(), unit, atol=1e-12)
    back.sum().backward()
    assert matrices.grad.isfinite().all()
    a, b = quats[:20], quats[20:40]
    np.testing.assert_allclose(quaternion_to_matrix(quaternion_multiply(a, b)),
                               quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-12)


def test_projection_is_the_local_linearisation_of_the_camera():
    scene = _scene(dtype=torch.float64)
    splats = project_gaussians(scene["means"], scene["quats"], scene["scales"],
                               scene["opacities"], scene["viewmats"], scene["Ks"], WIDTH, HEIGHT)
    K, view = scene["Ks"][1], scene["viewmats"][1]

    def pixel(point):
        cam = view[:3, :3] @ point + view[:3, 3]
        return (K @ (cam / cam[2]))[:2]

    for n in range(5):
        mean = scene["means"][1, n]
        np.testing.assert_allclose(splats.means2d[1, n], pixel(mean), atol=1e-9)
        jacobian = torch.autograd.functional.jacobian(pixel, mean)
        a, b, c = splats.conics[1, n]
        screen = torch.linalg.inv(torch.stack([torch.stack([a, b]), torch.stack([b, c])]))
        expected = jacobian @ covariances(scene["quats"][1, n], scene["scales"][1, n]) \
            @ jacobian.T + EPS2D * torch.eye(2, dtype=torch.float64)
        np.testing.assert_allclose(screen, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("opaque", [False, True])
def test_compositor_matches_the_reference_in_values_and_gradients(opaque):
    scene = _scene(opaque=opaque)
    for tensor in scene.values():
        tensor.requires_grad_(True)
    weights = torch.rand(2, HEIGHT, WIDTH, 6, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, fn in (("ours", composite), ("reference", composite_reference)):
        image, alpha = _render(scene, fn)
        loss = (torch.cat([image, alpha], -1) * weights).sum()
        grads = torch.autograd.grad(loss, list(scene.values()))
        results[name] = (image.detach(), alpha.detach(), grads)
    ours, reference = results["ours"], results["reference"]
    assert (reference[1] > 0.01).float().mean() > 0.3  # the scene covers the canvas
    if opaque:
        # Pixels ran out of light: the stop rule kept just over 1e-4 of it.
        assert 1 - 1e-3 < reference[1].max() < 1 - 1e-4 + 1e-6
    assert (ours[0] - reference[0]).abs().max() <= 1e-5
    assert (ours[1] - reference[1]).abs().max() <= 1e-5
    for name, got, want in zip(scene, ours[2], reference[2], strict=True):
        assert want.abs().max() > 0, name  # every input gets a gradient
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max()), name


def test_one_splat_at_a_pixel_centre():
    """A round Gaussian facing the camera at a pixel centre: that pixel shows opacity x colour
    over the background, its neighbours less, far pixels only the background."""
    scene = _scene(batch=1, count=1, channels=3, dtype=torch.float64)
    scene["means"][:] = torch.tensor([(10.5 - WIDTH / 2) / 30 * 2, (8.5 - HEIGHT / 2) / 30 * 2, 2])
    scene["quats"][:] = torch.tensor([1.0, 0, 0, 0])
    scene["scales"][:] = 0.05
    scene["opacities"][:] = 0.5
    image, alpha = rasterize(**scene, width=WIDTH, height=HEIGHT)
    colour, background = scene["colors"][0, 0], scene["backgrounds"][0]
    np.testing.assert_allclose(alpha[0, 8, 10, 0], 0.5, atol=1e-12)
    np.testing.assert_allclose(image[0, 8, 10], 0.5 * colour + 0.5 * background, atol=1e-12)
    assert 0 < alpha[0, 8, 11, 0] < 0.5
    np.testing.assert_allclose(image[0, 0, 0], background, atol=1e-12)


def test_gaussians_behind_the_camera_or_off_screen_draw_nothing():
    scene = _scene(batch=1, count=2, dtype=torch.float64)
    scene["means"][0, 0] = torch.tensor([0.0, 0.0, -2.0])  # behind
    scene["means"][0, 1] = torch.tensor([5.0, 0.0, 2.0])  # far right of the view
    splats = project_gaussians(scene["means"], scene["quats"], scene["scales"],
                               scene["opacities"], scene["viewmats"], scene["Ks"], WIDTH, HEIGHT)
    assert (splats.radii == 0).all()
    image, alpha = rasterize(**scene, width=WIDTH, height=HEIGHT)
    assert alpha.abs().max() == 0
    np.testing.assert_allclose(image[0], scene["backgrounds"][0].expand(HEIGHT, WIDTH, -1))


def test_many_channels_and_no_background():
    scene = _scene(batch=1, count=30, channels=32)
    scene["backgrounds"] = None
    image, alpha = rasterize(**scene, width=WIDTH, height=HEIGHT, backend="torch")
    assert image.shape == (1, HEIGHT, WIDTH, 32) and alpha.shape == (1, HEIGHT, WIDTH, 1)
    reference, _ = _render(scene, composite_reference)
    assert (image - reference).abs().max() <= 1e-5


def test_bad_shapes_and_back_ends_are_named():
    scene = _scene()
    scene["opacities"] = scene["opacities"][..., None]
    with pytest.raises(ValueError, match=r"opacities has shape \(2, 40, 1\), expected \(2, 40\)"):
        rasterize(**scene, width=WIDTH, height=HEIGHT)
    with pytest.raises(ValueError, match="unknown rasterizer back end 'vulkan'"):
        rasterize(**_scene(), width=WIDTH, height=HEIGHT, backend="vulkan")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_back_ends_match_the_cpu():
    scene = _scene(opaque=True)
    cpu_image, cpu_alpha = rasterize(**scene, width=WIDTH, height=HEIGHT, backend="torch")
    gpu = {k: v.cuda() for k, v in scene.items()}
    image, alpha = rasterize(**gpu, width=WIDTH, height=HEIGHT, backend="torch")
    assert (image.cpu() - cpu_image).abs().max() <= 1e-5
    pytest.importorskip("gsplat")
    image, alpha = rasterize(**gpu, width=WIDTH, height=HEIGHT, backend="gsplat")
    assert (image.cpu() - cpu_image).abs().max() <= 1e-4
    assert (alpha.cpu() - cpu_alpha).abs().max() <= 1e-4

"""The Gaussian avatar network: shapes, determinism, gradients, what the source sees, and that
the rendering follows the target body."""

import numpy as np
import pytest
import torch

from backend.avatar.config import AvatarConfig
from backend.avatar.model import GaussianAvatar, seen_by_camera
from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.renderer.mesh_raster import vertex_normals

SMALL = AvatarConfig(latent=8, features=8, identity=16, vertex_features=4, uv_size=32,
                     width=8, depth=2)
HEIGHT, WIDTH = 64, 48
K = torch.tensor([[[110.0, 0, WIDTH / 2], [0, 110.0, HEIGHT / 2], [0, 0, 1]]])


@pytest.fixture(scope="module")
def body(open_asset):
    model = BodyModel(open_asset)
    with torch.no_grad():
        vertices = model(model.default_params(1)).vertices
    return to_camera(vertices, torch.tensor([[0.0, 0.25, 4.5]]))  # all of it in view


def _avatar(open_asset, seed=0):
    torch.manual_seed(seed)
    arrays = open_asset.arrays
    return GaussianAvatar(SMALL, np.asarray(arrays["faces"]), arrays["uv_coords"],
                          arrays["uv_faces"], len(arrays["v_template"]))


def _image(seed=0):
    return torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


def test_build_and_render_shapes_and_determinism(open_asset, body):
    avatar = _avatar(open_asset)
    gaussians = avatar.build(_image(), body, K)
    count = avatar.vertex_count + avatar.texel_count
    assert gaussians.colors.shape == (1, count, SMALL.latent)
    assert gaussians.quats.shape == (1, count, 4) and gaussians.opacities.shape == (1, count)
    assert (gaussians.scales > 0).all() and (gaussians.opacities > 0).all()
    assert (gaussians.offsets[:, :avatar.vertex_count] == 0).all()  # template: on the mesh
    first = avatar.render(gaussians, body, K, HEIGHT, WIDTH)
    assert first.image.shape == (1, 3, HEIGHT, WIDTH) and first.alpha.shape == (1, 1, HEIGHT, WIDTH)
    assert 0.05 < first.alpha.mean() < 0.8  # the body covers part of the frame
    again = _avatar(open_asset).render(_avatar(open_asset).build(_image(), body, K), body, K,
                                       HEIGHT, WIDTH)
    torch.testing.assert_close(again.image, first.image)
    other = avatar.render(avatar.build(_image(seed=1), body, K), body, K, HEIGHT, WIDTH)
    assert not torch.equal(other.raw, first.raw)  # the source image matters


def test_gradients_reach_every_part(open_asset, body):
    avatar = _avatar(open_asset)
    rendering = avatar.render(avatar.build(_image(), body, K), body, K, HEIGHT, WIDTH)
    (rendering.image.mean() + rendering.raw.mean()).backward()
    for name, parameter in avatar.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_source_sees_only_surfaces_facing_it(open_asset, body):
    faces = torch.as_tensor(np.asarray(open_asset.arrays["faces"]))
    big = K.clone()
    big[:, :2] *= 4  # the regressor's crop size, 256 x 192
    seen = seen_by_camera(body, body, faces, big, HEIGHT * 4, WIDTH * 4)[0].bool()
    normals = vertex_normals(body[0], faces)
    facing = (normals * -body[0]).sum(-1) / body[0].norm(dim=-1)  # cos to the camera ray
    assert 0.25 < seen.float().mean() < 0.75
    # Away from the head (eyeballs and the inner mouth are thinner than the tolerance):
    # surfaces turned to the camera are seen unless a finger hides them, those turned away not.
    body_only = torch.ones(len(facing), dtype=torch.bool)
    body_only[torch.as_tensor(np.asarray(open_asset.arrays["head_vertex_ids"]))] = False
    assert seen[(facing > 0.5) & body_only].float().mean() > 0.8
    assert seen[(facing < -0.5) & body_only].float().mean() < 0.06


def test_the_rendering_follows_the_target_body(open_asset, body):
    avatar = _avatar(open_asset)
    with torch.no_grad():
        gaussians = avatar.build(_image(), body, K)
        here = avatar.render(gaussians, body, K, HEIGHT, WIDTH).alpha[0, 0]
        shift = torch.tensor([0.3, 0.0, 0.0])
        there = avatar.render(gaussians, body + shift, K, HEIGHT, WIDTH).alpha[0, 0]
    columns = torch.arange(WIDTH, dtype=here.dtype)
    moved = (there.sum(0) @ columns) / there.sum() - (here.sum(0) @ columns) / here.sum()
    expected = 110.0 * 0.3 / body[0, :, 2].mean()
    assert abs(moved - expected) < 0.15 * expected

"""The avatar's pluggable appearance encoders: a ViT started from a DINOv2 file (written here
in DINOv2's own layout: patch 14, LayerScale, class token, 37x37 positions) or from a
regressor checkpoint, trained into a renderer checkpoint that then loads without the file;
wrong or missing files named."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.avatar.checkpoint import (
    AvatarCheckpointMismatch,
    AvatarUnavailable,
    build_avatar,
    load_avatar,
    start_encoder_from,
)
from backend.avatar.config import AvatarConfig
from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.regressor.checkpoint import save_checkpoint
from backend.regressor.layout import ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig
from backend.regressor.vit import CONFIGS
from training.avatar.config import RendererTrainConfig
from training.avatar.train import train_renderer
from training.config import CONFIG_DIR, load_config
from training.data.pairs import ShardPairs

SMALL = AvatarConfig(latent=8, features=8, identity=16, vertex_features=4, uv_size=32,
                     width=8, depth=2, encoder_vit="vit_micro")
K = torch.tensor([[[300.0, 0, 96.0], [0, 300.0, 128.0], [0, 0, 1]]])


def _dinov2_file(path, size="vit_micro", grid=37, seed=0):
    """A DINOv2 backbone's state dict as its repository saves it (random values)."""
    vit = CONFIGS[size]
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.02

    state = {"cls_token": rand(1, 1, vit.dim), "mask_token": rand(1, vit.dim),
             "pos_embed": rand(1, 1 + grid * grid, vit.dim),
             "patch_embed.proj.weight": rand(vit.dim, 3, 14, 14),
             "patch_embed.proj.bias": rand(vit.dim),
             "norm.weight": 1 + rand(vit.dim), "norm.bias": rand(vit.dim)}
    hidden = int(vit.dim * vit.mlp_ratio)
    for i in range(vit.depth):
        for name, shape in {"norm1.weight": (vit.dim,), "norm1.bias": (vit.dim,),
                            "attn.qkv.weight": (3 * vit.dim, vit.dim),
                            "attn.qkv.bias": (3 * vit.dim,),
                            "attn.proj.weight": (vit.dim, vit.dim), "attn.proj.bias": (vit.dim,),
                            "ls1.gamma": (vit.dim,), "norm2.weight": (vit.dim,),
                            "norm2.bias": (vit.dim,), "mlp.fc1.weight": (hidden, vit.dim),
                            "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (vit.dim, hidden),
                            "mlp.fc2.bias": (vit.dim,), "ls2.gamma": (vit.dim,)}.items():
            state[f"blocks.{i}.{name}"] = rand(*shape)
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def body(open_asset):
    model = BodyModel(open_asset)
    with torch.no_grad():
        vertices = model(model.default_params(1)).vertices
    return to_camera(vertices, torch.tensor([[0.0, 0.25, 5.0]]))


def test_a_dinov2_file_starts_the_encoder_and_gradients_reach_it(open_asset, body, tmp_path):
    state = _dinov2_file(tmp_path / "dinov2_vits14.pth")
    avatar = build_avatar(dataclasses.replace(SMALL, encoder="dinov2"), open_asset)
    start_encoder_from(avatar, tmp_path / "dinov2_vits14.pth")
    vit = avatar.encoder.vit
    assert vit.config.patch == 14 and vit.config.grid == (18, 13)  # 256x192 in 14-px patches
    torch.testing.assert_close(vit.blocks[1].ls2.gamma, state["blocks.1.ls2.gamma"])
    torch.testing.assert_close(vit.patch_embed.weight, state["patch_embed.proj.weight"])
    assert vit.pos_embed.shape == (1, 18 * 13, 96)  # 37x37 resized, class token dropped
    image = torch.rand(1, 3, 256, 192)
    rendering = avatar.render(avatar.build(image, body, K), body, K, 256, 192)
    assert rendering.image.shape == (1, 3, 256, 192) and 0.02 < rendering.alpha.mean() < 0.9
    rendering.image.mean().backward()
    assert vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_a_regressor_checkpoint_starts_the_vit_encoder(open_asset, tmp_path):
    torch.manual_seed(0)
    regressor = PearRegressor(RegressorConfig("vit_micro", head_dim=32, head_depth=1,
                                              head_heads=2), ParamLayout(open_asset.param_spec))
    folder = save_checkpoint(regressor, open_asset, tmp_path / "regressor")
    avatar = build_avatar(dataclasses.replace(SMALL, encoder="vit"), open_asset)
    start_encoder_from(avatar, folder)  # the folder: its backbone, not its head
    for name, value in regressor.backbone.state_dict().items():
        torch.testing.assert_close(avatar.encoder.vit.state_dict()[name], value)


def test_wrong_or_missing_encoder_files_are_named(open_asset, tmp_path):
    vit_avatar = build_avatar(dataclasses.replace(SMALL, encoder="vit"), open_asset)
    with pytest.raises(AvatarUnavailable, match="model.encoder_weights.*nothing is downloaded"):
        start_encoder_from(vit_avatar, tmp_path / "absent.pth")
    _dinov2_file(tmp_path / "dinov2.pth")
    with pytest.raises(AvatarCheckpointMismatch, match="dinov2.pth is not a vit_micro"):
        start_encoder_from(vit_avatar, tmp_path / "dinov2.pth")  # patch 14 into patch 16
    with pytest.raises(AvatarCheckpointMismatch, match="needs a ViT encoder"):
        start_encoder_from(build_avatar(SMALL, open_asset), tmp_path / "dinov2.pth")
    with pytest.raises(ValueError, match="unknown appearance encoder 'clip'"):
        build_avatar(dataclasses.replace(SMALL, encoder="clip"), open_asset)


def test_a_renderer_trained_from_dinov2_loads_without_the_file(open_asset, pairs_folder,
                                                                body, tmp_path):
    weights = tmp_path / "dinov2.pth"
    _dinov2_file(weights)
    config = load_config(CONFIG_DIR / "renderer_smoke.toml", [
        "optim.steps=1", f"run.out='{tmp_path / 'run'}'", "model.encoder='dinov2'",
        "model.encoder_vit='vit_micro'", f"model.encoder_weights='{weights}'"],
        RendererTrainConfig)
    checkpoint = train_renderer(config, open_asset, ShardPairs(pairs_folder)).checkpoint
    weights.unlink()  # a trained renderer carries its encoder
    avatar = load_avatar(checkpoint, open_asset)
    assert avatar.config.encoder == "dinov2" and avatar.encoder.vit.config.layer_scale
    with torch.no_grad():
        image = torch.rand(1, 3, 256, 192)
        assert avatar.render(avatar.build(image, body, K), body, K, 256, 192).image.isfinite().all()

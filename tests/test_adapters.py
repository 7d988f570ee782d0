"""HMR-Adapter-style adapters on the regressor's decoder head: an adapted network starts
exactly as its base, only the adapters learn, and the hand guidance samples the image where
the estimate's hands are."""

from __future__ import annotations

import pytest
import torch

from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.camera import project, to_camera
from backend.regressor.adapters import AdaptedRegressor, AdapterConfig, crop_grid
from backend.regressor.crop_camera import crop_to_full
from backend.regressor.layout import ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig
from backend.regressor.vit import INPUT_SIZE


@pytest.fixture(scope="module")
def base(open_asset) -> PearRegressor:
    torch.manual_seed(0)
    network = PearRegressor(RegressorConfig("vit_micro", head_dim=64, head_depth=2,
                                            head_heads=4), ParamLayout(open_asset.param_spec))
    with torch.no_grad():  # a base that is not at its mean: its output depends on the image
        network.head.out.weight.normal_(std=0.02)
    return network.eval()


def _adapted(base, open_asset, **config) -> AdaptedRegressor:
    body = LandmarkModel(BodyModel(open_asset), sets=[])
    return AdaptedRegressor(base, body, open_asset.joint_names, AdapterConfig(**config))


def _images(count: int = 2) -> torch.Tensor:
    return torch.randn(count, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(1))


def test_an_adapted_network_starts_exactly_as_its_base(base, open_asset):
    adapted = _adapted(base, open_asset).eval()
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(adapted(images), base(images), rtol=0, atol=1e-6)


def test_only_the_adapters_learn_and_they_move_the_output(base, open_asset):
    adapted = _adapted(base, open_asset)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    trainable = [p for p in adapted.parameters() if p.requires_grad]
    assert trainable == list(adapted.adapter.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    images = _images()
    target = base(images).detach() + 0.1
    for _ in range(5):
        optimizer.zero_grad()
        loss = (adapted(images) - target).abs().mean()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in base.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    with torch.no_grad():
        assert (adapted(images) - base(images)).abs().max() > 1e-3
    # Every adapter part took part: both guidance paths and each layer's branch.
    names = {k.split(".")[0] for k in adapted.adapter.state_dict()}
    assert names == {"layers", "hand_features", "hand_embedding", "arm_to_hands"}
    moved = [k for k, p in adapted.adapter.named_parameters()
             if p.grad is not None and p.grad.abs().sum() > 0]
    assert any(k.startswith("arm_to_hands") for k in moved)
    assert any(k.startswith("hand_features") for k in moved)


def test_adapters_are_small_beside_the_base(base, open_asset):
    adapted = _adapted(base, open_asset)
    count = sum(p.numel() for p in adapted.adapter.parameters())
    assert 0 < count < 0.5 * sum(p.numel() for p in base.parameters())


def test_the_hand_guidance_samples_where_the_crop_camera_puts_a_point():
    """``crop_grid`` against the full-perspective projection of the same crop (CLIFF's
    conversion), far away so the body's depth relief does not count."""
    points = torch.tensor([[[0.1, -0.3, 0.05], [-0.2, 0.4, -0.02]]])
    camera = torch.tensor([[0.9, 0.05, -0.1]])
    center, height = torch.tensor([[400.0, 300.0]]), torch.tensor([200.0])
    focal = torch.tensor([20000.0])
    cam_t = crop_to_full(camera, center, height, focal, center)
    pixels = project(to_camera(points, cam_t), focal[:, None, None], center[:, None])
    expected = (pixels - center[:, None]) / torch.stack([height * 0.375, height * 0.5], -1)
    torch.testing.assert_close(crop_grid(points, camera), expected, rtol=0, atol=1e-3)


def test_an_adapter_checkpoint_loads_onto_its_own_base_only(base, open_asset, tmp_path):
    from backend.regressor.adapter_checkpoint import load_adapted, save_adapter
    from backend.regressor.checkpoint import save_checkpoint
    from backend.regressor.errors import CheckpointMismatch, RegressorUnavailable

    base_folder = save_checkpoint(base, open_asset, tmp_path / "base")
    adapted = _adapted(base, open_asset)
    with torch.no_grad():
        for parameter in adapted.adapter.parameters():
            parameter.add_(0.01)  # trained, as far as the round trip can tell
    folder = save_adapter(adapted, base_folder, open_asset, tmp_path / "adapter")
    loaded = load_adapted(base_folder, folder, open_asset)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), adapted.eval()(images))

    other = PearRegressor(base.config, base.layout)  # another base of the same shape
    other_folder = save_checkpoint(other, open_asset, tmp_path / "other")
    with pytest.raises(CheckpointMismatch, match="trained on the base checkpoint"):
        load_adapted(other_folder, folder, open_asset)
    with pytest.raises(RegressorUnavailable, match="pear-train adapt"):
        load_adapted(base_folder, tmp_path / "nowhere", open_asset)

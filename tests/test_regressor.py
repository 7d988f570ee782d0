"""The PEAR regressor's network, output layout, camera and checkpoints (CPU; tiny heads where
the size does not matter)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.body.model import BodyModel
from backend.body.rotations import (
    axis_angle_to_matrix,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)
from backend.regressor.checkpoint import (
    CheckpointMismatch,
    RegressorUnavailable,
    load_checkpoint,
    save_checkpoint,
)
from backend.regressor.crop_camera import CROP_ASPECT, crop_box, crop_intrinsics, crop_to_full
from backend.regressor.layout import CAMERA_MEAN, ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig
from backend.regressor.pretrained import PretrainedMismatch, load_backbone
from backend.regressor.vit import CONFIGS, INPUT_SIZE, ViT

SMALL_HEAD = {"head_dim": 64, "head_depth": 1, "head_heads": 4}
# Parameters (millions) of ViT-Ti/S/B/L/H as published (DeiT; Dosovitskiy et al. 2021).
PUBLISHED_MILLIONS = {"vit_t": 5.7, "vit_s": 22.1, "vit_b": 86.6, "vit_l": 304.3, "vit_h": 632.0}


@pytest.fixture(scope="module")
def layout(open_asset):
    return ParamLayout(open_asset.param_spec)


@pytest.fixture(scope="module")
def vit_s_model(layout):
    torch.manual_seed(0)
    return PearRegressor(RegressorConfig("vit_s", **SMALL_HEAD), layout).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_backbone_gives_192_tokens_of_its_width(name, layout):
    config = CONFIGS[name]
    with torch.device("meta"):  # shapes only: ViT-H has 630M parameters
        model = PearRegressor(RegressorConfig(name, **SMALL_HEAD), layout)
        tokens = model.backbone(torch.empty(2, 3, 256, 192))
        out = model(torch.empty(2, 3, 256, 192))
    assert tokens.shape == (2, 192, config.dim)
    assert out.shape == (2, layout.size)
    assert len(model.backbone.blocks) == config.depth
    # The standard sizes are the published architectures, whose pretrained weights they load:
    # their parameter counts (with a 1000-class classifier, as published) match.
    if name in PUBLISHED_MILLIONS:
        count = sum(p.numel() for p in model.backbone.parameters()) + 1001 * config.dim
        assert abs(count / 1e6 / PUBLISHED_MILLIONS[name] - 1) < 0.01, (name, count)


def test_the_layout_covers_the_asset_spec(layout, open_asset):
    names = {s.spec.name for s in layout.slots}
    assert names == {p.name for p in open_asset.param_spec if p.size and p.name != "transl"}
    rotations = sum(p.size for p in open_asset.param_spec if p.kind == "axis_angle")
    others = sum(p.size for p in open_asset.param_spec
                 if p.kind != "axis_angle" and p.name != "transl")
    assert layout.size == 2 * rotations + others + 3
    params, camera = layout.decode(layout.mean()[None])
    for slot in layout.slots:  # the mean is the model's own default
        default = BodyModel(open_asset).default_params(1)[slot.spec.name]
        torch.testing.assert_close(params[slot.spec.name], default.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(camera, torch.tensor([CAMERA_MEAN]))


def test_6d_rotations_round_trip():
    axis_angle = torch.randn(64, 3, dtype=torch.float64)
    matrices = axis_angle_to_matrix(axis_angle)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(matrices)), matrices)


def test_a_new_network_predicts_the_mean_pose(vit_s_model, layout):
    images = torch.randn(3, 3, 256, 192)
    with torch.no_grad():
        out = vit_s_model(images)
    # The last layer starts small, not zero: the output is the mean to within a hundredth.
    assert (out - layout.mean()).abs().max() < 0.05
    params, camera = layout.decode(out)
    assert params["body_pose"].abs().max() < 0.1
    assert (camera[:, 0] - CAMERA_MEAN[0]).abs().max() < 0.05


def test_gradients_reach_the_backbone(layout):
    torch.manual_seed(0)
    model = PearRegressor(RegressorConfig("vit_s", **SMALL_HEAD), layout)
    out = model(torch.randn(2, 3, 256, 192))
    (out - torch.randn_like(out)).square().mean().backward()
    for name in ("patch_embed.weight", "pos_embed", "blocks.0.attn.qkv.weight"):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and grad.abs().max() > 0, name


def test_crop_and_full_frame_cameras_agree():
    """Projecting with the full camera equals projecting with the crop camera and mapping the
    crop pixels back; and the weak-perspective crop camera, converted, projects a shallow body
    where the crop put it."""
    generator = torch.Generator().manual_seed(0)
    batch = 4
    boxes = torch.tensor([[100.0, 50, 300, 500], [900, 100, 1100, 400], [0, 0, 60, 200],
                          [500, 600, 560, 700]], dtype=torch.float64)
    center, height = crop_box(boxes)
    focal = torch.tensor([1500.0, 1500, 900, 2000], dtype=torch.float64)
    image_center = torch.tensor([[640.0, 360]] * batch, dtype=torch.float64)
    points = torch.randn(batch, 20, 3, generator=generator, dtype=torch.float64) * 0.4
    camera = torch.rand(batch, 3, generator=generator, dtype=torch.float64) * 0.4 + 0.6
    cam_t = crop_to_full(camera, center, height, focal, image_center)
    in_camera = points + cam_t[:, None]
    full = focal[:, None, None] * in_camera[..., :2] / in_camera[..., 2:] + image_center[:, None]
    crop_focal, crop_center = crop_intrinsics(focal, image_center, center, height)
    crop = (crop_focal[:, None, None] * in_camera[..., :2] / in_camera[..., 2:]
            + crop_center[:, None])
    # Crop pixels back to the image: crop pixels per image pixel, and the image pixel at the
    # crop's top-left corner.
    zoom = INPUT_SIZE[0] / height
    origin = center - torch.stack([height * CROP_ASPECT, height], dim=1) / 2
    assert (crop / zoom[:, None, None] + origin[:, None] - full).abs().max() < 1e-4

    flat = points.clone()
    flat[..., 2] = 0.0  # no depth relief: weak perspective is exact
    in_camera = flat + cam_t[:, None]
    full = focal[:, None, None] * in_camera[..., :2] / in_camera[..., 2:] + image_center[:, None]
    weak = center[:, None] + height[:, None, None] / 2 * camera[:, None, :1] * (
        flat[..., :2] + camera[:, None, 1:])
    assert (weak - full).abs().max() < 1e-6


def test_crop_boxes_keep_the_person_and_the_aspect():
    center, height = crop_box(torch.tensor([[10.0, 20, 110, 420], [0, 0, 400, 100]]))
    torch.testing.assert_close(center, torch.tensor([[60.0, 220], [200, 50]]))
    torch.testing.assert_close(height, torch.tensor([480.0, 400 / 0.75 * 1.2]))


def test_checkpoint_round_trip_and_mismatches(vit_s_model, open_asset, smplx_asset, tmp_path):
    folder = save_checkpoint(vit_s_model, open_asset, tmp_path / "ckpt")
    loaded = load_checkpoint(folder, open_asset)
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), vit_s_model(images), atol=0, rtol=0)

    with pytest.raises(CheckpointMismatch, match="trained for body model 'open'.*'smplx'"):
        load_checkpoint(folder, smplx_asset)
    with pytest.raises(RegressorUnavailable, match="no regressor checkpoint"):
        load_checkpoint(tmp_path / "nowhere", open_asset)
    config = json.loads((folder / "config.json").read_text())
    config["network"]["head_dim"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatch, match="does not fit the network"):
        load_checkpoint(folder, open_asset)


def test_a_pretrained_backbone_loads_from_a_timm_style_file(tmp_path):
    """A ViTPose-like file: ``backbone.`` prefix, timm names, a class token and a 14x14 grid."""
    torch.manual_seed(0)
    source = ViT(CONFIGS["vit_s"])
    state = {f"backbone.{k}".replace("patch_embed.", "patch_embed.proj."): v.clone()
             for k, v in source.state_dict().items()}
    grid = torch.randn(1, 1 + 14 * 14, 384)
    state["backbone.pos_embed"] = grid
    save_file(state, str(tmp_path / "vitpose.safetensors"))
    target = ViT(CONFIGS["vit_s"])
    initial = target.pos_embed.detach().clone()
    load_backbone(target, tmp_path / "vitpose.safetensors")
    torch.testing.assert_close(target.blocks[3].mlp.fc1.weight, source.blocks[3].mlp.fc1.weight)
    # The 14x14 grid (class token dropped) resized to 16x12: the file's values, not the init.
    assert target.pos_embed.shape == (1, 192, 384)
    assert np.isfinite(target.pos_embed.detach().numpy()).all()
    assert not torch.allclose(target.pos_embed, initial)
    assert abs(float(target.pos_embed.detach().std()) - float(grid[:, 1:].std())) < 0.2

    torch.save({"state_dict": state}, tmp_path / "vitpose.pth")
    load_backbone(ViT(CONFIGS["vit_s"]), tmp_path / "vitpose.pth")
    with pytest.raises(PretrainedMismatch, match="is not a vit_b backbone"):
        load_backbone(ViT(CONFIGS["vit_b"]), tmp_path / "vitpose.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone(ViT(CONFIGS["vit_s"]), tmp_path / "missing.pth")


def test_onnx_runtime_gives_the_torch_parameters(vit_s_model, layout, tmp_path):
    from backend.regressor.onnx_export import OnnxRegressor, export_onnx

    runtime = OnnxRegressor(export_onnx(vit_s_model, tmp_path / "pear.onnx"))
    images = torch.randn(3, 3, 256, 192)
    with torch.no_grad():
        expected = vit_s_model(images)
    got = torch.from_numpy(runtime(images.numpy()))
    ours, theirs = layout.decode(got), layout.decode(expected)
    for name, value in theirs[0].items():
        assert (ours[0][name] - value).abs().max() < 1e-4, name
    assert (ours[1] - theirs[1]).abs().max() < 1e-4


def test_a_person_crop_is_centred_and_scaled_from_its_box():
    from backend.regressor.inference import crop_person, normalize

    image = np.zeros((480, 640, 3), np.uint8)
    image[200:240, 300:340] = 255  # a 40 px square centred at (320, 220)
    crop = crop_person(image, np.array([320.0, 220.0]), 160.0)  # 1.6 crop px per image px
    assert crop.shape == (256, 192, 3)
    bright = np.argwhere(crop[..., 0] > 127)
    np.testing.assert_allclose(bright.mean(0), [127.5, 95.5], atol=1.0)  # the crop's centre
    assert abs(np.ptp(bright[:, 0]) + 1 - 64) <= 2  # 40 px * 1.6
    edge = crop_person(image, np.array([5.0, 5.0]), 160.0)  # mostly outside: black, no error
    assert edge[:100, :70].max() == 0
    tensor = normalize(crop[None])
    assert tensor.shape == (1, 3, 256, 192) and tensor.dtype == torch.float32


def test_predictions_project_onto_the_full_image(vit_s_model, open_asset, tmp_path):
    from backend.regressor.inference import Regressor

    folder = save_checkpoint(vit_s_model, open_asset, tmp_path / "ckpt")
    regressor = Regressor(folder, open_asset)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (480, 640, 3), np.uint8),
              rng.integers(0, 255, (720, 1280, 3), np.uint8)]
    boxes = np.array([[200.0, 40, 400, 460], [900, 300, 1000, 700]])
    out = regressor.predict(images, boxes)
    assert out.params["body_pose"].shape == (2, 21, 3)
    assert out.landmarks_px["mediapipe_pose33"].shape == (2, 33, 2)
    np.testing.assert_allclose(out.focal, [640, 1280])
    # The untrained network predicts the mean camera: the body stands in its box, whose
    # centre its torso projects near (the crop camera is centred on the box).
    hips = out.landmarks_px["mediapipe_pose33"][:, [23, 24]].mean(1)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    heights = boxes[:, 3] - boxes[:, 1]
    assert (np.abs(hips - centres).max(1) < 0.25 * heights).all()

    # A known principal point places the body through it: the same crop, seen from a camera
    # whose axis meets the image elsewhere, is the body moved sideways by (shift x depth / f).
    principal = np.array([[300.0, 260], [700, 330]])
    moved = regressor.predict(images, boxes, center=principal)
    image_centres = np.array([[320.0, 240], [640, 360]])
    np.testing.assert_allclose(moved.cam_t[:, 2], out.cam_t[:, 2], rtol=1e-6)
    np.testing.assert_allclose(moved.cam_t[:, :2] - out.cam_t[:, :2], (image_centres - principal)
                               * out.cam_t[:, 2:] / out.focal[:, None], rtol=1e-4, atol=1e-6)
    # ... and it still lands where the crop saw it.
    moved_hips = moved.landmarks_px["mediapipe_pose33"][:, [23, 24]].mean(1)
    assert np.abs(moved_hips - hips).max() < 0.02 * heights.min()


@pytest.mark.slow
def test_a_tiny_overfit_run_lowers_the_loss_tenfold(layout):
    """ViT-S on 8 crops the test makes (smooth colour fields: different people look
    different) and 8 target outputs: ten times lower loss within 40 steps (measured: 24 steps,
    40 s on this 2-core machine)."""
    torch.manual_seed(0)
    model = PearRegressor(RegressorConfig("vit_s", head_dim=128, head_depth=2, head_heads=4),
                          layout)
    generator = torch.Generator().manual_seed(1)
    images = torch.nn.functional.interpolate(torch.randn(8, 3, 4, 3, generator=generator),
                                             size=(256, 192), mode="bilinear")
    targets = layout.mean() + 0.3 * torch.randn(8, layout.size, generator=generator)
    optimizer = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": 3e-4},
                                   {"params": model.head.parameters(), "lr": 1e-3}])
    losses = []
    for _ in range(40):
        loss = (model(images) - targets).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, losses


@pytest.mark.slow
def test_torch_compile_gives_the_eager_predictions(vit_s_model, open_asset, tmp_path):
    """``Regressor(compile=True)``: the same numbers through torch.compile (about 40 s to
    compile on 2 cores, hence slow)."""
    from backend.regressor.inference import Regressor

    folder = save_checkpoint(vit_s_model, open_asset, tmp_path / "ckpt")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(2)]
    boxes = np.array([[200.0, 40, 400, 460], [100, 100, 300, 400]])
    eager = Regressor(folder, open_asset).predict(images, boxes)
    compiled = Regressor(folder, open_asset, compile=True).predict(images, boxes)
    for name, value in eager.params.items():
        np.testing.assert_allclose(compiled.params[name], value, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(compiled.cam_t, eager.cam_t, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_half_precision_match_the_cpu(vit_s_model, open_asset, tmp_path):
    """On a GPU box: the network on CUDA, in fp32 and fp16, against the CPU reference."""
    from backend.regressor.inference import Regressor

    folder = save_checkpoint(vit_s_model, open_asset, tmp_path / "ckpt")
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(2)]
    boxes = np.array([[200.0, 40, 400, 460], [100, 100, 300, 400]])
    cpu = Regressor(folder, open_asset, device="cpu").predict(images, boxes)
    for half, tolerance in ((False, 1e-3), (True, 2e-2)):
        gpu = Regressor(folder, open_asset, device="cuda", half=half).predict(images, boxes)
        np.testing.assert_allclose(gpu.params["body_pose"], cpu.params["body_pose"],
                                   atol=tolerance)
        np.testing.assert_allclose(gpu.cam_t, cpu.cam_t, rtol=tolerance, atol=tolerance)


def test_the_roofline_gemms_are_the_vits_linear_layers():
    """`backend bench regressor` judges a network against matmuls shaped like its own: all of its
    linear layers' FLOPs are the roofline shapes', once per block."""
    from torch.utils.flop_counter import FlopCounterMode

    from backend.bench.regressor import HIGH_RES, vit_matmuls

    for config, batch in ((CONFIGS["vit_s"], 2), (HIGH_RES, 1)):
        with torch.device("meta"), FlopCounterMode(display=False) as counter:
            ViT(config)(torch.zeros(batch, 3, *config.image))
        linear = counter.get_flop_counts()["Global"][torch.ops.aten.addmm]
        shapes = vit_matmuls(config, batch)
        assert linear == config.depth * sum(2 * rows * inputs * outputs
                                            for rows, inputs, outputs in shapes)

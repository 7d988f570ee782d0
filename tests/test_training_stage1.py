"""Training stage 1's foundations: configurations, the batch format, the forward to keypoints
and the Eq. 1-3 losses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.layout import ParamLayout
from training.cli import main as pear_train
from training.config import CONFIG_DIR, ConfigError, TrainConfig, load_config
from training.data.batch import collate
from training.forward import JOINTS, predict
from training.losses import compute_loss

from .conftest import random_params
from .training_support import labelled_samples_and_truth

# -- configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pear_vit_b", "cpu_vit_s", "smoke"])
def test_the_shipped_configs_load(name):
    config = load_config(CONFIG_DIR / f"{name}.toml")
    assert isinstance(config, TrainConfig)
    from backend.regressor.vit import CONFIGS

    assert config.model.backbone in CONFIGS


def test_the_paper_config_is_the_papers_setting():
    config = load_config(CONFIG_DIR / "pear_vit_b.toml")
    assert config.model.backbone == "vit_b"
    assert config.optim.batch_size * 8 == 320 and config.optim.steps == 200_000


def test_overrides_take_toml_values_and_win_over_the_file():
    config = load_config(CONFIG_DIR / "smoke.toml",
                         ["optim.lr=3e-4", "data.train=['a', 'b']", "run.out=elsewhere",
                          "data.augment=false"])
    assert config.optim.lr == 3e-4 and config.data.train == ["a", "b"]
    assert config.run.out == "elsewhere" and config.data.augment is False
    assert config.optim.steps == 20  # from the file


def test_yaml_configs_load_like_toml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  batch_size: 3\nmodel:\n  backbone: vit_s\n")
    config = load_config(path)
    assert config.optim.batch_size == 3 and config.model.backbone == "vit_s"


@pytest.mark.parametrize("text, overrides, words", [
    ("[optim]\nlrr = 1\n", [], ["unknown field", "lrr", "[optim]", "batch_size"]),
    ("[optimizer]\nlr = 1\n", [], ["unknown section", "optimizer", "optim"]),
    ("[optim]\nbatch_size = 'many'\n", [], ["optim.batch_size", "expected int", "many"]),
    ("[optim]\nlr = 1e-4\n", ["optim.lr"], ["section.field=value"]),
    ("[optim\n", [], ["not valid TOML"]),
])
def test_a_bad_config_names_the_file_and_the_field(tmp_path, text, overrides, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides)
    message = str(error.value)
    assert str(path) in message or "--set" in message
    for word in words:
        assert word in message


def test_pear_train_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nlrr = 1\n")
    assert pear_train(["config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lrr" in err and "Traceback" not in err


def test_pear_train_help_does_not_import_torch():
    code = ("import sys\nfrom training.cli import build_parser\n"
            "build_parser().format_help()\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# -- the forward and the losses ---------------------------------------------------------------


def _labelled_batch(model: BodyModel, layout: ParamLayout, count: int = 3, seed: int = 0):
    """Samples with exact labels, as a batch, and the network output that predicts them."""
    samples, vector = labelled_samples_and_truth(model, count, seed)
    batch = collate(samples, [slot.spec for slot in layout.slots], len(model.joint_names),
                    {JOINTS: len(model.joint_names)})
    return vector, batch


@pytest.fixture(scope="module")
def float_model(smplx_asset):
    return BodyModel(smplx_asset), ParamLayout(smplx_asset.param_spec)


@pytest.fixture(scope="module")
def joints_only(float_model):
    """What the trainer poses: the joints alone (this asset has no landmark sets)."""
    return LandmarkModel(float_model[0], [])


def test_layout_encode_inverts_decode(float_model):
    model, layout = float_model
    params = {k: v.float() for k, v in random_params(model, 2, seed=3).items()}
    vector = layout.encode(params, torch.tensor([[0.8, 0.1, 0.2], [1.1, -0.2, 0.0]]))
    decoded, camera = layout.decode(vector)
    for name, value in decoded.items():
        assert torch.allclose(value, params[name].reshape(value.shape), atol=1e-4), name
    assert torch.allclose(camera[1], torch.tensor([1.1, -0.2, 0.0]))


def test_keypoints_of_the_truth_sit_inside_the_crop_units(float_model):
    model, layout = float_model
    _, batch = _labelled_batch(model, layout)
    points = batch.keypoints2d[JOINTS][..., :2]
    assert points.abs().max() < 1.0  # a person of ~1.5 m filling ~0.9 of a 500 px crop


def test_the_loss_is_zero_at_the_truth_and_grows_with_each_error(float_model, joints_only):
    model, layout = float_model
    vector, batch = _labelled_batch(model, layout)
    weights = TrainConfig().loss
    at_truth = compute_loss(predict(vector, batch, layout, joints_only, [JOINTS]), batch, weights)
    assert at_truth.total.item() < 1e-6
    assert {"global_orient", "body_pose", "hand_pose", "betas", "kp3d", "kp2d"} <= set(
        at_truth.per_sample)
    wrong = vector.clone()
    slot = next(s for s in layout.slots if s.spec.name == "body_pose")
    wrong[:, slot.start:slot.start + 6] += 0.3  # the first body joint's rotation
    off = compute_loss(predict(wrong, batch, layout, joints_only, [JOINTS]), batch, weights)
    assert off.terms()["body_pose"] > 0 and off.terms()["kp3d"] > 0 and off.terms()["kp2d"] > 0
    assert off.terms()["betas"] < 1e-9 and off.terms()["global_orient"] < 1e-9


def test_masks_keep_unlabelled_samples_out_of_their_terms(float_model, joints_only):
    model, layout = float_model
    vector, batch = _labelled_batch(model, layout)
    batch.has_params["betas"] = torch.tensor([1.0, 0.0, 1.0])
    batch.has_joints3d = torch.tensor([0.0, 1.0, 1.0])
    batch.keypoints2d[JOINTS][2, :, 2] = 0  # sample 2: no 2D keypoints
    wrong = vector.clone()
    slot = next(s for s in layout.slots if s.spec.name == "betas")
    wrong[:, slot.start] += 1.0
    wrong[:, layout.params_size] += 0.2  # the crop camera's scale: 2D and depth
    losses = compute_loss(predict(wrong, batch, layout, joints_only, [JOINTS]), batch,
                          TrainConfig().loss).per_sample
    assert losses["betas"][1] == 0 and losses["betas"][0] > 0 and losses["betas"][2] > 0
    assert losses["kp3d"][0] == 0
    assert losses["kp2d"][2] == 0 and losses["kp2d"][0] > 0


def test_gradients_reach_every_output_group(float_model, joints_only):
    model, layout = float_model
    vector, batch = _labelled_batch(model, layout)
    noisy = (vector + 0.05 * torch.randn(vector.shape, generator=torch.Generator()
                                         .manual_seed(1))).requires_grad_()
    compute_loss(predict(noisy, batch, layout, joints_only, [JOINTS]), batch,
                 TrainConfig().loss).total.backward()
    for slot in layout.slots:
        grad = noisy.grad[:, slot.start:slot.start + slot.size]
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, slot.spec.name
    assert noisy.grad[:, layout.params_size:].abs().sum() > 0  # the camera


# -- evaluation -------------------------------------------------------------------------------


class _Oracle(torch.nn.Module):
    """Answers with given output vectors, batch after batch (what a perfect network would)."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.vectors, self.at = vectors, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vectors[self.at:self.at + len(images)]
        self.at += len(images)
        return out


def test_evaluation_scores_a_perfect_network_zero_and_the_baseline_not(smplx_asset,
                                                                       float_model):
    from training.evaluate import compare

    samples, vectors = labelled_samples_and_truth(float_model[0], 6, seed=2)
    result = compare(_Oracle(vectors), smplx_asset, samples, batch_size=4)
    network, baseline, ratio = result["network"], result["baseline"], result["ratio"]
    assert network["mpjpe_mm"] < 0.1 and network["pa_mpjpe_mm"] < 0.1
    assert network["kp2d_px"] < 0.01 and network["pck_005"] == 1.0
    assert network["expression_l1"] < 1e-5
    assert baseline["mpjpe_mm"] > 20 and baseline["kp2d_px"] > 1
    assert ratio["mpjpe_mm"] < 0.01
    # the perfect network's poses vary as the truth's do; the baseline's are one constant
    assert network["body_pose_spread"] == pytest.approx(1.0, abs=1e-3)
    assert baseline["body_pose_spread"] == 0.0


def test_the_baselines_camera_fits_the_2d_joints(float_model, joints_only):
    from training.evaluate import fit_crop_camera

    model, layout = float_model
    vector, batch = _labelled_batch(model, layout, count=4, seed=5)
    mean = layout.mean().repeat(4, 1)
    target = batch.keypoints2d[JOINTS][..., :2]

    def error(v):
        return (predict(v, batch, layout, joints_only, [JOINTS]).keypoints2d[JOINTS]
                - target).abs().mean()

    fitted = fit_crop_camera(mean, batch, layout, joints_only)
    with torch.no_grad():
        assert error(fitted) < 0.8 * error(mean)  # measured: 0.068 vs 0.107 (rest pose)
    assert torch.equal(fitted[:, :layout.params_size], mean[:, :layout.params_size])


def test_overlays_draw_the_predicted_mesh_over_the_crop(smplx_asset, float_model, tmp_path):
    import dataclasses

    import cv2
    import numpy as np

    from training.overlays import GAP, write_overlays

    samples, vectors = labelled_samples_and_truth(float_model[0], 3, seed=4)
    gray = np.full((256, 192, 3), 90, np.uint8)
    samples = [dataclasses.replace(sample, image=gray) for sample in samples]
    written = write_overlays(_Oracle(vectors), smplx_asset, samples, tmp_path, count=3)
    assert [path.name for path in written] == [f"{i:03d}_test_4_{i}.png" for i in range(3)]
    covered = []
    for path, sample in zip(written, samples, strict=True):
        picture = cv2.imread(str(path))
        assert picture.shape == (256, 2 * 192 + GAP, 3)
        network, baseline = picture[:, :192], picture[:, 192 + GAP:]
        assert (baseline != 90).any(axis=-1).sum() > 500  # the baseline's mesh is drawn too
        # A perfect network's mesh lies on its own body joints, where the labels put them
        # (within 2 px: the test body's limbs are thin tubes with gaps at the joints).
        mesh = cv2.dilate((network != 90).any(axis=-1).astype(np.uint8), np.ones((5, 5)))
        for x, y, _ in sample.keypoints2d[JOINTS][:22]:
            col, row = round(x * 256 + 96), round(y * 256 + 128)
            if 20 <= row < 256 and 0 <= col < 192:  # inside the crop, below the label text
                covered.append(mesh[row, col] > 0)
    assert len(covered) > 30 and np.mean(covered) > 0.95

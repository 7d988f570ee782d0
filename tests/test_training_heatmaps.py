"""The heatmap head and term (training from scratch): targets where the keypoints are, a loss
that ignores unlabelled points and is least at the truth, each token drawing its own cells,
and the head trained, saved and resumed with the run."""

from __future__ import annotations

import csv

import pytest
import torch

from backend.regressor.vit import INPUT_SIZE
from training.config import CONFIG_DIR, load_config
from training.errors import TrainingDataError
from training.heatmaps import UPSCALE, HeatmapHead, heatmap_loss, heatmap_targets
from training.stage1 import build_trained_modules, train

from .training_support import labelled_samples

ROWS, COLS = INPUT_SIZE[0] // UPSCALE, INPUT_SIZE[1] // UPSCALE  # 64 x 48 cells


def _at_cell(row: int, col: int) -> list[float]:
    """Normalized crop units of a cell's centre (crop pixels from the crop's centre / height)."""
    height, width = INPUT_SIZE
    return [(UPSCALE * col + UPSCALE / 2 - width / 2) / height,
            (UPSCALE * row + UPSCALE / 2 - height / 2) / height]


def test_targets_peak_at_the_keypoints_cell():
    keypoints = torch.tensor([[[*_at_cell(10, 5), 1.0], [*_at_cell(60, 40), 1.0]]])
    targets = heatmap_targets(keypoints, (ROWS, COLS), sigma=2.0)
    assert targets.shape == (1, 2, ROWS, COLS)
    for k, cell in enumerate([(10, 5), (60, 40)]):
        peak = divmod(int(targets[0, k].argmax()), COLS)
        assert peak == cell and float(targets[0, k][cell]) == pytest.approx(1.0)
    # one sigma away along a row: exp(-1/2)
    assert float(targets[0, 0, 10, 7]) == pytest.approx(torch.exp(torch.tensor(-0.5)).item())


def test_the_loss_is_least_at_the_truth_and_ignores_unlabelled_points():
    keypoints = torch.tensor([[[*_at_cell(20, 20), 1.0], [*_at_cell(30, 10), 0.0]]])
    truth = heatmap_targets(keypoints, (ROWS, COLS), 4.0).clamp(1e-4, 1 - 1e-4)
    at_truth = truth.logit()
    shifted = at_truth.roll(3, dims=2)
    assert heatmap_loss(at_truth, keypoints, 4.0) < heatmap_loss(shifted, keypoints, 4.0)
    # the unlabelled second point: any logits there cost nothing
    scrambled = at_truth.clone()
    scrambled[:, 1] = torch.randn(ROWS, COLS) * 5
    assert torch.allclose(heatmap_loss(scrambled, keypoints, 4.0),
                          heatmap_loss(at_truth, keypoints, 4.0))


def test_each_token_draws_its_own_block_of_cells():
    grid = (INPUT_SIZE[0] // 16, INPUT_SIZE[1] // 16)
    head = HeatmapHead(dim=8, keypoints=3, grid=grid)
    tokens = torch.randn(1, grid[0] * grid[1], 8)
    before = head(tokens)
    assert before.shape == (1, 3, ROWS, COLS)
    row, col = 5, 7
    tokens[0, row * grid[1] + col] += 1.0
    changed = (head(tokens) - before).abs().sum((0, 1)) > 0
    expected = torch.zeros(ROWS, COLS, dtype=torch.bool)
    expected[UPSCALE * row:UPSCALE * (row + 1), UPSCALE * col:UPSCALE * (col + 1)] = True
    assert torch.equal(changed, expected)


@pytest.fixture(scope="module")
def samples(smplx_model):
    return labelled_samples(smplx_model.converted(torch.float32), 8, seed=3)


def test_the_head_trains_saves_and_resumes_with_the_run(tmp_path, smplx_asset, samples):
    from training.checkpointing import restore_run
    from training.optim import build_optimizer

    config = load_config(CONFIG_DIR / "smoke.toml", [f"run.out='{tmp_path / 'run'}'",
                                                      "optim.steps=3", "loss.heatmaps=1.0"])
    summary = train(config, smplx_asset, samples)
    with open(tmp_path / "run" / "log.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("heatmaps")]
    assert len(rows) == 3 and all(float(row["heatmaps"]) > 0 for row in rows)

    fresh = build_trained_modules(config, smplx_asset)
    untrained = [p.clone() for p in fresh.heatmaps.parameters()]
    optimizer, schedule = build_optimizer(fresh, config.optim, 1)
    restore_run(summary.checkpoint, fresh.regressor, optimizer, schedule, fresh.heatmaps)
    assert not all(torch.equal(a, b) for a, b in zip(untrained, fresh.heatmaps.parameters(),
                                                         strict=True))

    plain = build_trained_modules(load_config(CONFIG_DIR / "smoke.toml"), smplx_asset)
    optimizer, schedule = build_optimizer(plain, config.optim, 1)
    with pytest.raises(TrainingDataError, match="heatmap head"):
        restore_run(summary.checkpoint, plain.regressor, optimizer, schedule, plain.heatmaps)

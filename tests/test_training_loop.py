"""The stage-1 trainer: it learns, its checkpoints load into the backend, it resumes exactly,
it stops cleanly on a signal and it refuses a diverged loss."""

from __future__ import annotations

import csv
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.regressor.checkpoint import load_checkpoint
from training.config import CONFIG_DIR, load_config
from training.data.loader import RunOrder
from training.errors import TrainingDiverged
from training.stage1 import train

from .training_support import labelled_samples


def _config(tmp_path, *overrides):
    return load_config(CONFIG_DIR / "smoke.toml", [f"run.out='{tmp_path / 'run'}'",
                                                    "model.backbone='vit_micro'", *overrides])


def _losses(run) -> dict[int, float]:
    with open(run / "log.csv") as handle:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle)
                if row.get("loss")}


@pytest.fixture(scope="module")
def samples(smplx_model):
    return labelled_samples(smplx_model.converted(torch.float32), 16, seed=7)


def test_the_run_order_is_the_same_for_any_split_over_processes():
    single = list(RunOrder(10, 4, 1, 0, seed=3, start_step=0, steps=6))
    halves = [list(RunOrder(10, 2, 2, rank, seed=3, start_step=0, steps=6)) for rank in (0, 1)]
    for step in range(6):
        together = single[4 * step:4 * step + 4]
        assert together == halves[0][2 * step:2 * step + 2] + halves[1][2 * step:2 * step + 2]
    resumed = list(RunOrder(10, 4, 1, 0, seed=3, start_step=4, steps=6))
    assert resumed == single[16:]
    # every sample once per epoch, a different order the next epoch
    assert sorted(k % 10 for k in single[:10]) == list(range(10))
    assert [k % 10 for k in single[:10]] != [k % 10 for k in single[10:20]]


def test_the_smoke_config_overfits_sixteen_samples(tmp_path, smplx_asset, samples):
    """All 16 samples in every step at a constant learning rate: the loss falls tenfold (in
    250 steps; 200 gave 9.5x on the AVX2-only machines here, over 10x where AVX-512 was)."""
    config = _config(tmp_path, "optim.steps=250", "optim.batch_size=16",
                     "optim.reference_batch=16", "optim.final_lr_fraction=1.0",
                     "run.log_every=5", "run.checkpoint_every=1000")
    summary = train(config, smplx_asset, samples)
    losses = _losses(tmp_path / "run")
    first = np.mean([losses[s] for s in (5, 10)])
    last = np.mean([losses[s] for s in (245, 250)])
    assert last < first / 10, (first, last)
    assert summary.steps == 250 and not summary.stopped_early


def test_the_checkpoint_loads_into_the_backend_and_predicts_the_same(tmp_path, smplx_asset,
                                                                      samples):
    config = _config(tmp_path, "optim.steps=3")
    summary = train(config, smplx_asset, samples)
    network = load_checkpoint(summary.checkpoint, smplx_asset)
    images = torch.randn(2, 3, 256, 192)
    from training.checkpointing import restore_run
    from training.optim import build_optimizer
    from training.stage1 import build_network

    again = build_network(config, smplx_asset)
    optimizer, schedule = build_optimizer(again, config.optim, 1)
    assert restore_run(summary.checkpoint, again, optimizer, schedule).step == 3
    with torch.no_grad():
        assert torch.allclose(network(images), again.eval()(images), atol=1e-6)


def test_a_resumed_run_continues_the_same_loss_curve(tmp_path, smplx_asset, samples):
    whole = _config(tmp_path / "whole", "optim.steps=10", "run.checkpoint_every=5")
    train(whole, smplx_asset, samples)
    first_half = _config(tmp_path / "parts", "optim.steps=10", "run.checkpoint_every=5")

    calls = {"n": 0}

    def stop_after_five_steps(sample, rng):
        calls["n"] += 1
        if calls["n"] == 5 * 4 + 1:  # the first sample of step 6: SIGTERM mid-run
            os.kill(os.getpid(), signal.SIGTERM)
        return sample

    stopped = train(first_half, smplx_asset, samples, prepare=stop_after_five_steps)
    assert stopped.stopped_early and stopped.steps == 6  # the step in progress completes
    resumed = train(first_half, smplx_asset, samples, resume=True)
    assert resumed.steps == 10
    expected, got = _losses(tmp_path / "whole" / "run"), _losses(tmp_path / "parts" / "run")
    for step in range(1, 11):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step


def test_a_loss_that_is_not_finite_names_the_step_and_samples(tmp_path, smplx_asset, samples):
    broken = list(samples)
    broken[3] = replace(samples[3], id="test/broken", joints3d=np.full((55, 3), np.nan))
    order = list(RunOrder(len(broken), 4, 1, 0, seed=0, start_step=0, steps=8))
    failing_step = order.index(3) // 4 + 1  # the first step whose batch holds it
    config = _config(tmp_path, "optim.steps=8", "run.checkpoint_every=1")
    with pytest.raises(TrainingDiverged) as error:
        train(config, smplx_asset, broken)
    message = str(error.value)
    assert f"step {failing_step}" in message and "test/broken" in message
    assert "kp3d" in message
    if failing_step > 1:  # the steps before it were good and kept
        state = torch.load(tmp_path / "run" / "checkpoint" / "training_state.pt",
                           weights_only=False)
        assert state["step"] == failing_step - 1

"""``pear-train adapt`` end to end on a tiny base: the actor's footage pseudo-labelled, split by
time, adapters trained beside the frozen base (or the whole network with --full), the best
step kept, resumable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.regressor.adapter_checkpoint import load_adapted
from backend.regressor.checkpoint import load_checkpoint, save_checkpoint
from backend.regressor.layout import ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig
from training.adapt import REPORT, split_by_time
from training.cli import main as pear_train

from .footage_support import write_demo_clip

FRAMES = 8


def test_the_last_frames_of_every_clip_are_held_out():
    sources = [f"walk:{f}" for f in (3, 0, 1, 2, 4)] + [f"run:{f}" for f in range(10)]
    train, held = split_by_time(sources, 0.2)
    assert sorted(sources[i] for i in held) == ["run:8", "run:9", "walk:4"]
    assert len(train) + len(held) == len(sources) and not set(train) & set(held)


@pytest.fixture(scope="module")
def actor(server_home, open_asset, tmp_path_factory):
    """A tiny base checkpoint and a short clip of the actor."""
    folder = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    base = PearRegressor(RegressorConfig("vit_micro", head_dim=64, head_depth=2, head_heads=4),
                         ParamLayout(open_asset.param_spec))
    save_checkpoint(base, open_asset, folder / "base")
    clip = write_demo_clip(open_asset, FRAMES, folder / "actor.mp4")
    return folder, clip


def _adapt(actor, server_home, out, *extra) -> dict:
    folder, clip = actor
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(server_home))
        assert pear_train(["adapt", "--base", str(folder / "base"), "--footage", str(clip),
                           "--out", str(out), "--batch-size", "2", "--val-every", "2",
                           "--patience", "5", *extra]) == 0
    return json.loads((out / REPORT).read_text())


@pytest.fixture(scope="module")
def adapted_run(actor, server_home):
    folder, _ = actor
    return _adapt(actor, server_home, folder / "run", "--steps", "4"), folder / "run"


def test_adapt_trains_adapters_beside_the_frozen_base_and_resumes(actor, adapted_run,
                                                                 server_home, open_asset):
    folder, _ = actor
    report, out = adapted_run
    assert report["trained"] == "adapters" and report["steps_run"] == 4
    assert 0 < report["trained_parameters"] < report["base_parameters"]
    assert report["held_out_samples"] == 2 and report["train_samples"] + 2 <= FRAMES
    assert report["after"]["kp2d_px"] <= report["before"]["kp2d_px"] + 1e-6  # the best kept
    adapted = load_adapted(folder / "base", out / "adapter", open_asset)
    base = load_checkpoint(folder / "base", open_asset)
    assert all(torch.equal(a, b) for a, b in zip(adapted.base.state_dict().values(),
                                                 base.state_dict().values(), strict=True))
    # Resumed in a copy of the run: the same labels, on from step 4.
    shutil.copytree(out, folder / "resumed")
    resumed = _adapt(actor, server_home, folder / "resumed", "--steps", "6", "--resume")
    assert resumed["steps_run"] == 6 and resumed["before"] == report["before"]


def test_backend_fits_with_the_adapter_on_its_own_base_only(actor, adapted_run, server_home,
                                                           open_asset, tmp_path):
    from backend.results import load_results

    folder, clip = actor
    _, out = adapted_run
    env = {**os.environ, "PEAR_HOME": str(server_home), "OMP_NUM_THREADS": "1"}

    def fit(result: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backend.cli", "fit", str(clip), "-o",
                               str(result), "--estimator", "regressor", *extra], env=env,
                              capture_output=True, text=True, timeout=600)

    base_only = fit(tmp_path / "base.npz", "--checkpoint", str(folder / "base"))
    adapted = fit(tmp_path / "adapted.npz", "--checkpoint", str(folder / "base"),
                  "--adapter", str(out / "adapter"))
    assert base_only.returncode == 0 and adapted.returncode == 0, adapted.stderr
    poses = [load_results(tmp_path / f"{n}.npz").params["body_pose"] for n in ("base",
                                                                              "adapted")]
    assert np.abs(poses[0] - poses[1]).max() > 1e-5  # the adapter changed the estimate
    other = PearRegressor(RegressorConfig("vit_micro", head_dim=64, head_depth=2, head_heads=4),
                          ParamLayout(open_asset.param_spec))
    save_checkpoint(other, open_asset, tmp_path / "other")
    wrong = fit(tmp_path / "wrong.npz", "--checkpoint", str(tmp_path / "other"), "--adapter",
                str(out / "adapter"))
    assert wrong.returncode == 3 and "trained on the base checkpoint" in wrong.stderr
    tracker = subprocess.run([sys.executable, "-m", "backend.cli", "fit", str(clip), "-o",
                              str(tmp_path / "t.npz"), "--adapter", str(out / "adapter")],
                             env=env, capture_output=True, text=True, timeout=60)
    assert tracker.returncode == 2 and "adapts the regressor" in tracker.stderr


def test_adapt_full_fine_tunes_every_weight_for_the_comparison(actor, server_home, open_asset):
    folder, _ = actor
    out = folder / "full"
    report = _adapt(actor, server_home, out, "--steps", "2", "--full")
    assert report["trained"] == "full network"
    assert report["trained_parameters"] == report["base_parameters"]
    load_checkpoint(out / "checkpoint", open_asset)  # a regressor checkpoint of its own

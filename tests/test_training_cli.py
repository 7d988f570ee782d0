"""pear-train end to end on real files: synth shards -> stage1 (with validation, --install) ->
the backend loads the weights -> eval beside the baseline; torchrun with two processes
matches one process; a run killed with SIGKILL resumes onto the same loss curve."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest

from training.cli import main as pear_train
from training.config import CONFIG_DIR

from .run_support import (
    finish,
    kill_after_first_checkpoint,
    logged_losses,
    run_pear_train,
    wait_for_checkpoint,
)

SMOKE = str(CONFIG_DIR / "smoke.toml")


@pytest.fixture(scope="module")
def home(server_home, tmp_path_factory) -> Path:
    """A PEAR_HOME of its own (a run installs a checkpoint into it) with the open asset."""
    home = tmp_path_factory.mktemp("train_home")
    (home / "assets").mkdir()
    (home / "assets" / "open.npz").symlink_to(server_home / "assets" / "open.npz")
    return home


@pytest.fixture(scope="module")
def shards(home, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shards")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(home))
        for split, count in (("train", 8), ("val", 4)):
            assert pear_train(["synth", "--count", str(count), "--out", str(folder / split),
                               "--split", split, "--shard-size", "4"]) == 0
    return {"train": folder / "train", "val": folder / "val"}


def _run_args(shards: dict[str, Path], out: Path, *more: str) -> list[str]:
    return ["stage1", "--config", SMOKE, "--set", f"data.train=['{shards['train']}']",
            "--set", f"run.out='{out}'", *more]


def test_stage1_trains_validates_installs_and_eval_compares(home, shards, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("PEAR_HOME", str(home))
    out = tmp_path / "run"
    assert pear_train(_run_args(shards, out, "--set", "optim.steps=4", "--set",
                                f"data.val=['{shards['val']}']", "--set", "run.val_every=2",
                                "--install")) == 0
    printed = capsys.readouterr().out
    assert "done at step 4" in printed and "installed" in printed
    with open(out / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    validated = [row for row in rows if row.get("val_mpjpe_mm")]
    assert [int(row["step"]) for row in validated] == [2, 4]
    # The backend finds the installed weights with no flag.
    from backend.body import registry
    from backend.pipeline.recovery import load_regressor

    assert load_regressor(registry.load("open")) is not None
    # ... and `backend bench tracker` measures it on a rendered clip, alone and as the start.
    from backend.bench.tracker import regressor_fields
    from backend.body.model import BodyModel
    from backend.tracking.synthetic import make_clip

    asset = registry.load("open")
    clip = make_clip(BodyModel(asset), frames=3, size=(192, 256), focal=300.0)
    fields = regressor_fields(asset, clip, load_regressor(asset), lambda params: 1.0)
    assert set(fields) == {"regressor_pa_mpjpe_mm", "regressor_s_per_frame",
                           "regressor_tracker_pa_mpjpe_mm", "regressor_tracker_s_per_frame"}
    assert fields["regressor_tracker_s_per_frame"] > fields["regressor_s_per_frame"] > 0
    assert pear_train(["eval", "--checkpoint", str(out / "checkpoint"), "--data",
                       str(shards["val"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"network", "baseline", "ratio"}
    assert result["baseline"]["mpjpe_mm"] > 0 and "pck_01" in result["network"]


def test_stage1_without_data_says_what_to_give(home, monkeypatch, capsys):
    monkeypatch.setenv("PEAR_HOME", str(home))
    assert pear_train(["stage1", "--config", SMOKE]) == 2
    assert "data.train" in capsys.readouterr().err


def test_two_processes_under_torchrun_match_one_with_the_whole_batch(home, shards, tmp_path):
    steps = ["--set", "optim.steps=6", "--set", "data.augment=false"]
    single = run_pear_train(_run_args(shards, tmp_path / "one", *steps), home)
    finish(single)
    double = run_pear_train(_run_args(shards, tmp_path / "two", *steps, "--set",
                                   "optim.batch_size=2"), home, nproc=2)
    finish(double)
    for column in ("loss", "kp2d"):  # the terms too: the whole batch's, not rank 0's
        one = logged_losses(tmp_path / "one", column)
        two = logged_losses(tmp_path / "two", column)
        assert sorted(one) == sorted(two) == list(range(1, 7))
        for step in one:
            assert two[step] == pytest.approx(one[step], rel=2e-3), (column, step)


def test_sigterm_to_the_whole_process_group_stops_with_a_checkpoint(home, shards, tmp_path):
    """As a cluster scheduler (or Ctrl-C) does: the signal reaches the loader's workers too;
    the run still ends cleanly after the step in progress, with a checkpoint."""
    out = tmp_path / "run"
    process = run_pear_train(_run_args(shards, out, "--set", "optim.steps=10000", "--set",
                                    "data.workers=1", "--set", "run.checkpoint_every=2"),
                          home, new_session=True)
    state = out / "checkpoint" / "training_state.pt"
    wait_for_checkpoint(state, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    import torch

    assert 2 <= torch.load(state, weights_only=False)["step"] < 10000
    assert "stopped at step" in err and "bug" not in err


def test_a_run_killed_with_sigkill_resumes_onto_the_same_curve(home, shards, tmp_path):
    settings = ["--set", "optim.steps=8", "--set", "run.checkpoint_every=2"]
    finish(run_pear_train(_run_args(shards, tmp_path / "whole", *settings), home))
    parts = tmp_path / "parts"
    process = run_pear_train(_run_args(shards, parts, *settings), home)
    assert kill_after_first_checkpoint(parts, process) < 8  # killed mid-run
    finish(run_pear_train(_run_args(shards, parts, *settings, "--resume"), home))
    whole, resumed = logged_losses(tmp_path / "whole"), logged_losses(parts)
    assert sorted(resumed) == list(range(1, 9))
    with open(parts / "log.csv") as handle:  # the steps redone after the checkpoint: once
        logged = [int(row["step"]) for row in csv.DictReader(handle) if row.get("loss")]
    assert logged == list(range(1, 9))
    for step in whole:
        assert resumed[step] == pytest.approx(whole[step], rel=1e-5), step

"""Training runs as a user starts them (``pear-train`` in a subprocess, under torchrun for
several processes) and what their logs say."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_pear_train(args: list[str], home: Path, nproc: int = 1, new_session: bool = False
                   ) -> subprocess.Popen:
    env = {**os.environ, "PEAR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        command = [sys.executable, "-m", "training.cli", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={nproc}", "-m", "training.cli", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session)


def wait_for_checkpoint(state: Path, process: subprocess.Popen) -> None:
    """Until the run has written its first checkpoint."""
    deadline = time.monotonic() + 300
    while not state.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert state.is_file(), "no checkpoint appeared"


def kill_after_first_checkpoint(out: Path, process: subprocess.Popen) -> int:
    """SIGKILL the run once its first checkpoint is written; the step that checkpoint holds."""
    import torch

    state = out / "checkpoint" / "training_state.pt"
    wait_for_checkpoint(state, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return torch.load(state, weights_only=False)["step"]


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def logged_losses(out: Path, column: str = "loss") -> dict[int, float]:
    """Step -> the logged total loss (or another column: a loss term) of a run."""
    with open(out / "log.csv") as handle:
        return {int(row["step"]): float(row[column]) for row in csv.DictReader(handle)
                if row.get(column)}

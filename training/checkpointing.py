"""A run's checkpoint: the network in the backend's own checkpoint format (so
``backend fit --estimator regressor --checkpoint RUN/checkpoint`` loads a stage-1 run's as it
is; the renderer's is ``backend.avatar.checkpoint``'s) plus what resuming needs (optimizer,
schedule, step, random states, the resolved config). Written to a side folder and swapped in,
so a kill at any moment leaves the last complete checkpoint."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import TrainingDataError

STATE = "training_state.pt"


@dataclass
class RunState:
    step: int  # steps done
    config: dict


def save_run_checkpoint(folder: Path, write_network: Callable[[Path], object],
                        optimizer: torch.optim.Optimizer, schedule, step: int,
                        config: dict, auxiliary: torch.nn.Module | None = None) -> Path:
    """``write_network(folder)`` writes the network's checkpoint files (``weights.safetensors``
    and its config); ``auxiliary``: training-only modules (the heatmap head), kept for
    resuming only."""
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name
                                                                              + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    write_network(partial)
    torch.save({"step": step, "config": config, "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                "auxiliary": auxiliary.state_dict() if auxiliary is not None else None},
               partial / STATE)
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def restore_run(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                schedule, auxiliary: torch.nn.Module | None = None) -> RunState:
    """Load a run checkpoint into the network, the training-only ``auxiliary`` modules,
    optimizer and schedule; the random states too."""
    from safetensors.torch import load_file

    from backend.checkpoint_folder import WEIGHTS

    path = folder / STATE
    if not path.is_file():
        raise TrainingDataError(f"{folder}: no {STATE} to resume from (a checkpoint folder "
                                "of this run's out directory); start without --resume")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    if (auxiliary is None) != (state.get("auxiliary") is None):
        raise TrainingDataError(f"{folder}: the checkpoint was written "
                                f"{'without' if auxiliary is not None else 'with'} training-only "
                                "modules (stage 1's heatmap head); resume with the run's own "
                                "loss.heatmaps setting")
    if auxiliary is not None:
        auxiliary.load_state_dict(state["auxiliary"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return RunState(state["step"], state["config"])


def latest_checkpoint(out: Path) -> Path | None:
    """The run's checkpoint folder if a complete one exists (a ``.old`` one left by a kill
    during the swap counts)."""
    for folder in (out / "checkpoint", out / "checkpoint.old"):
        if (folder / STATE).is_file():
            return folder
    return None

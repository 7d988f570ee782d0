"""``pear-train plot``: a run's curves as one PNG, from its ``log.csv`` (``logs.py``): the total
loss and each loss term over the steps (log scale), and the validation metrics when the run
validated."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .errors import TrainingDataError

# Columns of a training row that are not loss terms.
_NOT_LOSSES = {"step", "lr", "img_s"}
VALIDATION_PREFIX = "val_"
SIZE_INCHES, DPI = (12.0, 5.0), 100  # so the PNG is 1200x500 pixels


def read_log(path: Path) -> tuple[dict[str, list[tuple[int, float]]],
                                  dict[str, list[tuple[int, float]]]]:
    """(training columns, validation columns) of a run's log.csv, each name -> [(step, value)]
    for the rows that have it."""
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file: give a run folder a `pear-train stage1` "
                                "run wrote (run.out)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    train: dict[str, list[tuple[int, float]]] = {}
    validation: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        try:
            step = int(row["step"])
        except (KeyError, TypeError, ValueError):
            raise TrainingDataError(f"{path}: a row without a step ({row}): not a run's "
                                    "log.csv") from None
        for name, text in row.items():
            if name == "step" or not text:
                continue
            target = validation if name.startswith(VALIDATION_PREFIX) else train
            target.setdefault(name.removeprefix(VALIDATION_PREFIX), []).append(
                (step, float(text)))
    if "loss" not in train:
        raise TrainingDataError(f"{path}: no logged training step yet (the file is empty or "
                                "has no loss column): plot it after the run logged a step")
    return train, validation


def plot_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``run/log.csv`` into ``out`` (default ``run/curves.png``); returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    run = Path(run)
    train, validation = read_log(run / "log.csv")
    out = Path(out) if out is not None else run / "curves.png"
    panels = 2 if validation else 1
    figure, axes = pyplot.subplots(1, panels, figsize=SIZE_INCHES, dpi=DPI, squeeze=False)
    losses = axes[0][0]
    for name, points in train.items():
        if name in _NOT_LOSSES:
            continue
        positive = [(s, v) for s, v in points if v > 0 and math.isfinite(v)]
        if positive:
            losses.plot(*zip(*positive, strict=True), label=name,
                        linewidth=2.5 if name == "loss" else 1.2)
    losses.set(yscale="log", xlabel="step", title=f"training loss ({run.name})")
    losses.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    losses.grid(True, which="both", alpha=0.3)
    if validation:
        metrics = axes[0][1]
        for name, points in validation.items():
            metrics.plot(*zip(*points, strict=True), marker="o", label=name)
        metrics.set(yscale="log" if all(v > 0 for p in validation.values() for _, v in p)
                    else "linear", xlabel="step", title="validation")
        metrics.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        metrics.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI)
    pyplot.close(figure)
    return out

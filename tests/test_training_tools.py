"""pear-train's tools around the trainer: plot (a run's curves as a PNG), pseudo-label (the
tracker as teacher: footage -> shards) and the pieces of bench."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from training.cli import main as pear_train
from training.errors import TrainingDataError
from training.plot import DPI, SIZE_INCHES, plot_run


def _write_log(run: Path, rows: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(run / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def test_plot_draws_a_run_log_with_validation(tmp_path):
    rows = [{"step": s, "loss": 2.0 / s, "kp2d": 0.1 / s, "kp3d": 1.5 / s, "lr": 1e-3,
             "img_s": 30.0} for s in range(1, 21)]
    rows += [{"step": 10, "val_mpjpe_mm": 250.0}, {"step": 20, "val_mpjpe_mm": 180.0}]
    _write_log(tmp_path / "run", rows)
    out = tmp_path / "elsewhere" / "curves.png"
    assert pear_train(["plot", str(tmp_path / "run"), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (SIZE_INCHES[0] * DPI, SIZE_INCHES[1] * DPI)
        assert len(image.convert("RGB").getcolors(1 << 16) or ()) > 20  # curves, not a blank canvas


def test_plot_defaults_into_the_run_folder(tmp_path):
    _write_log(tmp_path, [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    assert plot_run(tmp_path) == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_plot_names_a_missing_or_empty_log(tmp_path, capsys):
    with pytest.raises(TrainingDataError, match=str(tmp_path / "log.csv")):
        plot_run(tmp_path)
    (tmp_path / "log.csv").write_text("")
    with pytest.raises(TrainingDataError, match="log.csv.*empty"):
        plot_run(tmp_path)
    assert pear_train(["plot", str(tmp_path)]) != 0
    assert "log.csv" in capsys.readouterr().err

"""What a run tells: a progress line on stderr (step, loss, images/s, ETA), a CSV of every
logged step and TensorBoard event files (tensorboardX, when installed) in the run folder."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from backend.status_line import StatusLine


class RunLog:
    def __init__(self, out: Path, total_steps: int, start_step: int = 0):
        self.out, self.total, self.start_step = out, total_steps, start_step
        self._started = time.perf_counter()
        self._status = StatusLine()
        out.mkdir(parents=True, exist_ok=True)
        self._csv_path = out / "log.csv"
        self._columns: list[str] | None = None
        if self._csv_path.is_file():
            with open(self._csv_path) as handle:
                self._columns = next(csv.reader(handle), None)
            if self._columns:
                self._drop_rows_after(start_step)
        try:
            from tensorboardX import SummaryWriter

            self._board = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self._board = None

    def step(self, step: int, values: dict[str, float], images_per_s: float) -> None:
        """One logged training step (``step`` = steps done)."""
        row = {"step": step, **values, "img_s": images_per_s}
        self._write_csv(row)
        if self._board is not None:
            for name, value in values.items():
                self._board.add_scalar(f"train/{name}", value, step)
            self._board.add_scalar("train/img_s", images_per_s, step)
        done = step - self.start_step
        elapsed = time.perf_counter() - self._started
        eta = elapsed / max(done, 1) * (self.total - step)
        self._status.show(f"step {step}/{self.total}  loss {values['loss']:.4f}  "
                          f"{images_per_s:.1f} img/s  ETA {_duration(eta)}   ")

    def validation(self, step: int, values: dict[str, float]) -> None:
        self._write_csv({"step": step, **{f"val_{k}": v for k, v in values.items()}})
        if self._board is not None:
            for name, value in values.items():
                self._board.add_scalar(f"val/{name}", value, step)
        self._status.note(f"validation at step {step}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in values.items()))

    def note(self, text: str) -> None:
        self._status.note(text)

    def close(self) -> None:
        if self._board is not None:
            self._board.close()

    def _write_csv(self, row: dict) -> None:
        new_columns = [key for key in row if key not in (self._columns or [])]
        if self._columns is None or new_columns:
            self._columns = (self._columns or []) + new_columns
            self._rewrite()
        with open(self._csv_path, "a", newline="") as handle:
            csv.DictWriter(handle, self._columns).writerow(row)

    def _rewrite(self, keep=lambda row: True) -> None:
        rows = []
        if self._csv_path.is_file():
            with open(self._csv_path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if keep(row)]
        with open(self._csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self._columns)
            writer.writeheader()
            writer.writerows(rows)

    def _drop_rows_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: their rows from the run that
        was stopped go, so each step is logged once."""
        self._rewrite(lambda row: int(row["step"]) <= step)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"

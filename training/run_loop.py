"""The bookkeeping every trainer's loop shares (stage 1, the renderer, stage 2): steps and
images counted, a log line every ``run.log_every`` steps with the throughput since the last,
validation and checkpoint cadence, the stop request (SIGTERM/SIGINT: finish the step, write a
checkpoint, end), and the run's summary."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .config import RunConfig
from .logs import RunLog


@dataclass
class RunSummary:
    steps: int  # steps done in all (including those before a resume)
    stopped_early: bool  # a signal asked the run to stop
    last_loss: float
    checkpoint: Path | None
    seconds: float
    compute_s: float  # forward, backward and optimizer step; the rest is the trainer's
    images: int  # images (or pairs) this process trained on in this call

    @property
    def overhead_fraction(self) -> float:
        return 1 - self.compute_s / self.seconds if self.seconds else 0.0


class StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint after the step in progress."""

    def __init__(self):
        self.asked = False
        self._previous = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._ask)
        return self

    def _ask(self, *_) -> None:
        self.asked = True

    def __exit__(self, *_) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class RunLoop:
    """Use as a context around the loop over batches; ``finish()`` after it."""

    def __init__(self, out: Path, run: RunConfig, steps: int, world: distributed.World,
                 start: int, checkpoint: Path | None):
        self.run, self.steps, self.world = run, steps, world
        self.step, self.checkpoint = start, checkpoint
        self.log = RunLog(out, steps, start) if world.main else None
        self.images, self.compute_s, self.loss = 0, 0.0, math.nan
        self._began = self._window_start = time.perf_counter()
        self._window_images = 0
        self._stop = StopRequest()

    def __enter__(self) -> RunLoop:
        self._stop.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.__exit__(*exc)

    @property
    def stopping(self) -> bool:
        return self._stop.asked

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log.note(text)

    def stepped(self, images: int, loss: float, values: dict[str, float], lr: float,
                compute_s: float) -> None:
        """One step done on ``images`` samples of this process: count it, log it when due."""
        self.step += 1
        self.images += images
        self._window_images += images
        self.compute_s += compute_s
        self.loss = loss
        if self.step % self.run.log_every and self.step != self.steps:
            return
        # Every rank joins the mean, so the logged terms are the whole batch's, as the loss is.
        values = distributed.mean_values_over_ranks(values, self.world)
        if self.log is not None:
            rate = self._window_images * self.world.size / (time.perf_counter()
                                                            - self._window_start)
            self.log.step(self.step, {"loss": loss, **values, "lr": lr}, rate)
            self._window_start, self._window_images = time.perf_counter(), 0

    def validation_due(self) -> bool:
        return self.world.main and self.step % self.run.val_every == 0

    def validated(self, values: dict[str, float]) -> None:
        self.log.validation(self.step, values)

    def save_if_due(self, write: Callable[[], Path]) -> None:
        """Every ``run.checkpoint_every`` steps, at the last and when asked to stop: rank 0
        writes (``write()`` returns the folder), the others wait for it."""
        if (self.step % self.run.checkpoint_every == 0 or self.step == self.steps
                or self.stopping):
            if self.world.main:
                self.checkpoint = write()
            distributed.barrier(self.world)

    def finish(self) -> RunSummary:
        if self.log is not None:
            self.log.note(f"{'stopped' if self.stopping else 'finished'} at step {self.step}; "
                          f"checkpoint: {self.checkpoint}")
            self.log.close()
        return RunSummary(self.step, self.stopping, self.loss, self.checkpoint,
                          time.perf_counter() - self._began, self.compute_s, self.images)

"""The add-on's long jobs (a recovery, everyone in view, the avatar preview) are stepped
objects: ``step`` does a little work and returns, so Blender's modal timer drives them without
blocking the UI, and headless scripts and tests loop on it. This is what they share. No bpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

IDLE_NAP = 0.002  # seconds: when nothing arrived, don't spin


class Stepped:
    """``state`` is "running" until the job ends (its own words for how: "done",
    "cancelled", "failed", ...). Subclasses give ``step(budget=0.05) -> bool``: work for
    about ``budget`` seconds, False once the job has ended; ``work_for`` is the usual body of
    one."""

    state: str

    @property
    def running(self) -> bool:
        return self.state == "running"

    def run(self, progress: Callable[[Stepped], None] | None = None) -> None:
        """Step until the job ends (headless use); ``progress(self)`` after each step."""
        while self.step():
            if progress is not None:
                progress(self)

    def work_for(self, budget: float, advance: Callable[[], bool]) -> None:
        """Call ``advance`` (True when it did something) while running, for about ``budget``
        seconds."""
        deadline = time.monotonic() + budget
        while self.running and time.monotonic() < deadline:
            if not advance():
                time.sleep(IDLE_NAP)

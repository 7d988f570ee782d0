"""A status line on stderr that stays readable wherever stderr goes: redrawn in place on a
terminal; in a log file (a render node's batch log, ``nohup``) one whole line at most every
``every_s`` seconds, on each new topic and at the end, instead of thousands of carriage
returns on one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class StatusLine:
    def __init__(self, stream: TextIO | None = None, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self.every_s, self._clock = every_s, clock
        self._last: float | None = None  # when a line was last written (log files)
        self._topic: str | None = None
        self._open = False  # a terminal line is drawn and not yet ended

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: tests and callers may swap stderr

    def show(self, text: str, topic: str = "", final: bool = False) -> None:
        """The current status; ``final`` ends the line (the last update of a ``topic``)."""
        stream = self.stream
        if stream.isatty():
            stream.write("\r" + text + ("\n" if final else ""))
            self._open = not final
        else:
            now = self._clock()
            if (final or topic != self._topic or self._last is None
                    or now - self._last >= self.every_s):
                stream.write(text + "\n")
                self._last = now
        self._topic = None if final else topic
        stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a validation result, a warning) between status updates."""
        stream = self.stream
        stream.write(("\n" if self._open else "") + text + "\n")
        self._open = False
        stream.flush()

"""Drive a live source through an estimator, frame by frame, as fast as it answers: the
newest frame goes next, frames that came while it was busy are dropped (``sources.py``).

The estimator is either in this process (``LiveRecovery``) or a server session opened with
``live: true`` (``backend.server``); both give one ``LiveAnswer`` per frame taken."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..perception.frames import Frame
from .sources import LiveFrame, LiveSource


@dataclass
class LiveAnswer:
    index: int  # the frame's position in the source
    time: float  # its time on the source's clock, seconds
    params: dict[str, np.ndarray] | None  # name -> (1, ...); None until a body was seen
    cam_t: np.ndarray | None  # (1, 3)
    found: bool  # a body in this very frame (else the last one is repeated)
    latency_s: float  # from the frame's capture to its answer


@dataclass
class LiveRun:
    answers: list[LiveAnswer] = field(default_factory=list)
    seconds: float = 0.0
    source: dict[str, float] = field(default_factory=dict)  # LiveSource.stats()

    def summary(self) -> dict[str, float]:
        """fps answered, latency percentiles (ms) and the share of source frames dropped."""
        latencies = np.array([a.latency_s for a in self.answers]) * 1000
        return {"frames": len(self.answers),
                "fps": round(len(self.answers) / self.seconds, 2) if self.seconds else 0.0,
                "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1)
                if len(latencies) else float("nan"),
                "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1)
                if len(latencies) else float("nan"),
                "drop_frac": round(self.source.get("drop_frac", 0.0), 3)}


# One frame in, its answer's (params, cam_t, found) out; params None until a body was seen.
Answerer = Callable[[LiveFrame], tuple[dict | None, np.ndarray | None, bool]]


def run_live(source: LiveSource, answer: Answerer,
             on_answer: Callable[[LiveAnswer, LiveFrame], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             max_seconds: float | None = None) -> LiveRun:
    """Take the source's newest frame, answer it, repeat until the source ends, ``should_stop``
    says so or ``max_seconds`` have passed; ``on_answer(answer, frame)`` after each."""
    run = LiveRun()
    started = time.monotonic()
    while not should_stop() and (max_seconds is None
                                 or time.monotonic() - started < max_seconds):
        frame = source.next(timeout=0.5)
        if frame is None:
            if source.ended:
                break
            continue
        params, cam_t, found = answer(frame)
        answered = LiveAnswer(frame.index, frame.time, params, cam_t, found,
                              time.monotonic() - frame.captured)
        run.answers.append(answered)
        if on_answer is not None:
            on_answer(answered, frame)
    run.seconds = time.monotonic() - started
    run.source = source.stats()
    return run


def in_process(recovery) -> Answerer:
    """Answers from a ``LiveRecovery`` in this process."""

    def answer(frame: LiveFrame) -> tuple[dict | None, np.ndarray | None, bool]:
        recovery.add(Frame(frame.index, frame.time, frame.image))
        latest = recovery.latest
        return (None, None, False) if latest is None else (latest.params, latest.cam_t,
                                                           latest.found)

    return answer


def through_session(session, image_format: str = "jpeg") -> Answerer:
    """Answers from a server session opened with ``live=True`` (``RemoteSession``)."""

    def answer(frame: LiveFrame) -> tuple[dict | None, np.ndarray | None, bool]:
        reply = session.receive(session.send_frame(frame.index, frame.time, frame.image,
                                                   image_format))
        live = reply["result"].get("live")
        return (None, None, False) if live is None else (live["params"], live["cam_t"],
                                                         bool(live["found"]))

    return answer

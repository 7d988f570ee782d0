"""Drive a live source through an estimator, frame by frame, as fast as it answers: the
newest frame goes next, frames that came while it was busy are dropped (``sources.py``).

The estimator is either in this process (``LiveRecovery``) or a server session opened with
``live: true`` (``backend.server``); both give one ``LiveAnswer`` per frame taken."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..perception.frames import Frame
from .sources import LatestFrame, LiveFrame, LiveSource

# How long ``run_through_session`` waits for a new frame while an answer is owed, before it
# looks for the answer again.
OWED_POLL_S = 0.005


@dataclass
class LiveAnswer:
    index: int  # the frame's position in the source
    time: float  # its time on the source's clock, seconds
    params: dict[str, np.ndarray] | None  # name -> (1, ...); None until a body was seen
    cam_t: np.ndarray | None  # (1, 3)
    found: bool  # a body in this very frame (else the last one is repeated)
    latency_s: float  # from the frame's capture to its answer
    answered_at: float  # time.monotonic() of the answer


@dataclass
class LiveRun:
    answers: list[LiveAnswer] = field(default_factory=list)
    seconds: float = 0.0
    source: dict[str, float] = field(default_factory=dict)  # LiveSource.stats()

    def summary(self) -> dict[str, float]:
        """What a user sees once the capture runs: answered fps, latency percentiles (ms) and
        the share of the source's frames dropped while busy, all after the first answer
        (``first_answer_ms``: the start-up, models loading and the first fit)."""
        if not self.answers:
            return {"frames": 0, "first_answer_ms": float("nan")}
        first, steady = self.answers[0], self.answers[1:]
        out = {"frames": len(self.answers),
               "first_answer_ms": round(1000 * first.latency_s, 1)}
        if steady:
            span = steady[-1].answered_at - first.answered_at
            latencies = 1000 * np.array([a.latency_s for a in steady])
            offered = steady[-1].index - first.index  # frames the source made meanwhile
            out.update(fps=round(len(steady) / span, 2) if span > 0 else float("nan"),
                       latency_ms_p50=round(float(np.percentile(latencies, 50)), 1),
                       latency_ms_p95=round(float(np.percentile(latencies, 95)), 1),
                       drop_frac=round(1 - len(steady) / offered, 3))
        return out


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
    while not _stopping(should_stop, started, max_seconds):
        frame = source.next(timeout=0.5)
        if frame is None:
            if source.ended:
                break
            continue
        _record(run, frame, answer(frame), on_answer)
    run.seconds = time.monotonic() - started
    run.source = source.stats()
    return run


def _stopping(should_stop: Callable[[], bool], started: float, max_seconds: float | None
              ) -> bool:
    """``should_stop`` says so, or ``max_seconds`` have passed since ``started``."""
    return should_stop() or (max_seconds is not None
                             and time.monotonic() - started >= max_seconds)


def _record(run: LiveRun, frame: LiveFrame,
            answer: tuple[dict | None, np.ndarray | None, bool],
            on_answer: Callable[[LiveAnswer, LiveFrame], None] | None) -> None:
    params, cam_t, found = answer
    now = time.monotonic()
    answered = LiveAnswer(frame.index, frame.time, params, cam_t, found,
                          now - frame.captured, now)
    run.answers.append(answered)
    if on_answer is not None:
        on_answer(answered, frame)


def run_pipelined(source: LiveSource, detect: Callable[[LiveFrame], Any],
                  fit: Callable[[Any], tuple[dict | None, np.ndarray | None, bool]],
                  on_answer: Callable[[LiveAnswer, LiveFrame], None] | None = None,
                  should_stop: Callable[[], bool] = lambda: False,
                  max_seconds: float | None = None) -> LiveRun:
    """``run_live`` in two stages on two threads: ``detect`` runs on the source's newest
    frames while ``fit`` answers the newest frame detected (on 2 cores each keeps a core;
    docs/live.md). A detection the fit was too busy for is replaced by the next, as the
    source replaces frames; a source that keeps every frame (a movie played with
    ``realtime=False``) has every frame detected and answered. An error in either stage ends
    the run and is raised here."""
    run = LiveRun()
    started = time.monotonic()
    handoff = LatestFrame(wait_for_consumer=source.keeps_every_frame)
    done = threading.Event()
    failed: list[BaseException] = []

    def over() -> bool:
        return done.is_set() or _stopping(should_stop, started, max_seconds)

    def detecting() -> None:
        try:
            while not over():
                frame = source.next(timeout=0.5)
                if frame is None:
                    if source.ended:
                        break
                    continue
                if not handoff.put((frame, detect(frame))):
                    break
        except BaseException as exc:  # raised on the fitting thread, never lost
            failed.append(exc)
        finally:
            handoff.close()

    detector = threading.Thread(target=detecting, name="live detection", daemon=True)
    detector.start()
    try:
        while not _stopping(should_stop, started, max_seconds):
            item = handoff.get(timeout=0.1)
            if item is None:
                if handoff.finished:
                    break
                continue
            frame, detected = item
            _record(run, frame, fit(detected), on_answer)
    finally:
        done.set()
        handoff.close()
        detector.join()
    if failed:
        raise failed[0]
    run.seconds = time.monotonic() - started
    run.source = source.stats()
    return run


def run_in_process(recovery, source: LiveSource,
                   on_answer: Callable[[LiveAnswer, LiveFrame], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   max_seconds: float | None = None, pipelined: bool = True) -> LiveRun:
    """Answers from a ``LiveRecovery`` in this process, on one torch thread (a frame's fit is
    many small operations, which a second thread slows), its compiled steps prepared first.
    ``pipelined``: detection and fit on a core each (``run_pipelined``); else one after the
    other (``run_live``). With the fit compiled (~50-70 ms a frame) the detector (~60-110
    ms) is the longer stage, and the pipeline answers more frames per second in real time as well
    as with every frame kept (docs/live.md)."""
    import torch

    def detect(frame: LiveFrame):
        return recovery.detect(Frame(frame.index, frame.time, frame.image))

    def fit(detected) -> tuple[dict | None, np.ndarray | None, bool]:
        latest = recovery.answer(detected)
        return (None, None, False) if latest is None else (latest.params, latest.cam_t,
                                                           latest.found)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Compiled steps are specific to the thread count: prepared under the one they run on.
        recovery.warm_up()
        if pipelined:
            return run_pipelined(source, detect, fit, on_answer, should_stop, max_seconds)
        return run_live(source, lambda frame: fit(detect(frame)), on_answer, should_stop,
                        max_seconds)
    finally:
        torch.set_num_threads(threads)


def run_through_session(source: LiveSource, session, image_format: str = "jpeg",
                        first_index: int = 0,
                        on_answer: Callable[[LiveAnswer, LiveFrame], None] | None = None,
                        should_stop: Callable[[], bool] = lambda: False,
                        max_seconds: float | None = None, in_flight: int = 2) -> LiveRun:
    """``run_live`` answered by a server session opened with ``live=True``
    (``RemoteSession``), with up to ``in_flight`` frames at the server: it detects a frame
    while it fits the one before, a core each (docs/live.md). The source's frames go as
    ``first_index`` onwards (after frames the session already had). Stopping waits for the
    answers still owed."""
    run = LiveRun()
    started = time.monotonic()
    owed: collections.deque[tuple[LiveFrame, int]] = collections.deque()
    taking = True  # the source still gives frames and nobody said stop
    while taking or owed:
        taking = taking and not _stopping(should_stop, started, max_seconds)
        if taking and len(owed) < in_flight:
            # While an answer is owed, look for a frame only briefly, then for the answer.
            frame = source.next(timeout=OWED_POLL_S if owed else 0.5)
            if frame is not None:
                owed.append((frame, session.send_frame(first_index + frame.index, frame.time,
                                                       frame.image, image_format)))
                continue
            taking = not source.ended
        if not owed:
            continue
        frame, request = owed[0]
        waiting = not taking or len(owed) >= in_flight  # nothing else to do meanwhile
        reply = session.receive(request) if waiting else session.poll(request)
        if reply is not None:
            owed.popleft()
            _record(run, frame, live_answer(reply["result"].get("live")), on_answer)
    run.seconds = time.monotonic() - started
    run.source = source.stats()
    return run


def live_answer(live: dict | None) -> tuple[dict | None, np.ndarray | None, bool]:
    """A frame reply's ``live`` (``server.estimators.live_message``) as an answer's (params,
    cam_t, found)."""
    return (None, None, False) if live is None else (live["params"], live["cam_t"],
                                                     bool(live["found"]))

"""Live captures the server runs itself: ``capture.start`` names a source the backend opens
(a camera, a stream URL, a movie played in real time; ``backend.live.sources``), its threads
answer its newest frames with a ``live`` estimator (one detects while the other fits, a core
each: ``run_pipelined``), and the client collects the answers with ``capture.poll`` and ends
it with ``capture.stop`` (docs/protocol.md). The Blender add-on's *Live* button drives a rig
this way: only the backend touches the camera.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from collections.abc import Callable

from ..device import use_torch_threads
from ..live.run import LiveAnswer, live_answer, run_pipelined
from ..live.sources import LiveSource, SourceError, open_source
from ..results import results_to_message
from .protocol import ErrorCode, ProtocolError

logger = logging.getLogger("backend.server")

KEPT_ANSWERS = 256  # answers a capture keeps for polls; older ones are gone (polls are frequent)
MAX_POLL_ANSWERS = 64  # answers one poll returns at most: the newest


class Capture:
    """One running capture: its thread opens the source, then answers frames until stopped,
    the source ends or fails (and fits them, on one torch thread, while a second detects)."""

    def __init__(self, capture_id: str, owner: bytes, fields: dict, open_estimator: Callable):
        self.id, self.owner, self.fields = capture_id, owner, fields
        self.state = "starting"  # -> "running" -> "ended" | "stopped" | "failed"
        self.error: dict | None = None  # {code, message} when failed
        self.source: LiveSource | None = None
        self.last_seen = time.monotonic()
        self._open_estimator = open_estimator
        self._clip = None
        self._rig: dict | None = None
        self._answers: collections.deque[LiveAnswer] = collections.deque(maxlen=KEPT_ANSWERS)
        self._answered = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"capture {capture_id}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.source = open_source(self.fields["source"])
            with self.source:
                settings = {"estimator": self.fields["estimator"], "asset": self.fields["asset"],
                            "smooth": self.fields["smooth"], "fps": self.source.fps,
                            "intrinsics": self.fields["intrinsics"],
                            "adapter": self.fields["adapter"], "live": True, "rig": False,
                            "subject": None, "person": None, "person_box": None}
                self._clip = self._open_estimator(settings)
                self.state = "running"
                use_torch_threads(1)
                run_pipelined(self.source, self._detect, self._fit, self._keep,
                              self._stop.is_set)
            self.state = "stopped" if self._stop.is_set() else "ended"
        except SourceError as exc:
            self._fail(ErrorCode.UNAVAILABLE, str(exc))
        except ProtocolError as exc:
            self._fail(exc.code, exc.message)
        except Exception as exc:  # reported to the client, never lost with the thread
            logger.exception("capture %s failed", self.id)
            self._fail(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _detect(self, frame):
        return self._clip.detect_frame(frame.index, frame.time, frame.image)[1]

    def _fit(self, detected) -> tuple[dict | None, object, bool]:
        return live_answer(self._clip.answer_frame(detected)["live"])

    def _keep(self, answer: LiveAnswer, _frame) -> None:
        with self._lock:
            self._answers.append(answer)
            self._answered += 1

    def _fail(self, code: str, message: str) -> None:
        self.error = {"code": code, "message": message}
        self.state = "failed"

    def rig(self) -> dict | None:
        """The performer's rig once the body's shape is held (built once)."""
        if self._rig is None and self._clip is not None:
            self._rig = self._clip.live_rig()
        return self._rig

    def poll(self, after: int) -> dict:
        """The state, the source's stats and the answers to frames after index ``after``
        (the newest ``MAX_POLL_ANSWERS`` of them)."""
        with self._lock:
            fresh = [a for a in self._answers if a.index > after][-MAX_POLL_ANSWERS:]
            answered = self._answered
        source = self.source
        return {"capture": self.id, "state": self.state, "error": self.error,
                "width": None if source is None else source.width,
                "height": None if source is None else source.height,
                "fps": None if source is None else source.fps,
                "answered": answered,
                "source": None if source is None else source.stats(),
                "answers": [{"index": a.index, "time": a.time, "found": a.found,
                             "latency_ms": round(1000 * a.latency_s, 1),
                             "params": a.params, "cam_t": a.cam_t}
                            for a in fresh if a.params is not None]}

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> dict:
        """Stop, and the clip of everything answered (``results``, nil if nothing was)."""
        self._stop.set()
        self._thread.join()
        reply = self.poll(after=1 << 62)
        answered = None if self._clip is None else self._clip.answered()
        reply["results"] = None if answered is None else results_to_message(answered)
        if self._clip is not None:
            self._clip.close()
        return reply


class Captures:
    """The server's captures, by id; each belongs to the client that started it."""

    def __init__(self, open_estimator: Callable, limit: int):
        self._open_estimator, self.limit = open_estimator, limit
        self._captures: dict[str, Capture] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._captures)

    def start(self, owner: bytes, fields: dict) -> dict:
        with self._lock:
            if len(self._captures) >= self.limit:
                raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, f"the server already runs "
                                    f"{self.limit} capture(s); stop one (capture.stop)")
            capture = Capture(secrets.token_hex(8), owner, fields, self._open_estimator)
            self._captures[capture.id] = capture
        return {"capture": capture.id}

    def poll(self, owner: bytes, fields: dict) -> dict:
        capture = self._owned(owner, fields["capture"])
        reply = capture.poll(fields["after"])
        if fields["rig"]:
            reply["rig"] = capture.rig()
        return reply

    def stop(self, owner: bytes, fields: dict) -> Capture:
        """Take the capture out and tell it to stop; its ``stop()`` (waiting for the frame
        in hand, then its clip) is the caller's to run off the I/O thread."""
        capture = self._owned(owner, fields["capture"])
        with self._lock:
            self._captures.pop(capture.id, None)
        capture.request_stop()
        return capture

    def _owned(self, owner: bytes, capture_id: str) -> Capture:
        with self._lock:
            capture = self._captures.get(capture_id)
        if capture is None or capture.owner != owner:
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, f"no capture {capture_id[:64]!r} "
                                "(stopped, timed out, or another client's)")
        capture.last_seen = time.monotonic()
        return capture

    def reap(self, now: float, timeout: float) -> list[str]:
        """Stop the captures nobody polled for ``timeout`` seconds; their ids."""
        with self._lock:
            idle = [c for c in self._captures.values() if now - c.last_seen > timeout]
            for capture in idle:
                self._captures.pop(capture.id)
        for capture in idle:  # nobody waits for these: stopped on a thread of their own
            capture.request_stop()
            threading.Thread(target=capture.stop, daemon=True).start()
        return [capture.id for capture in idle]

    def stop_all(self) -> None:
        with self._lock:
            running, self._captures = list(self._captures.values()), {}
        for capture in running:
            capture.stop()

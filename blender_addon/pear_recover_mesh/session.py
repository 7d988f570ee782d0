"""A recovery as a stepped object: footage frames -> the backend -> keyframes on a rig.

Blender's UI drives it from a modal timer (``step`` does a few milliseconds of work and
returns), tests and scripts call ``step`` in a loop; headless Blender gets no timer events,
so nothing here waits on one. The clip goes to the backend in chunks (``chunk`` frames, each
one server session fitted on its own): each chunk's keyframes are applied as soon as it is
fitted, so cancelling — or losing the backend — keeps every chunk already applied.

No bpy here: the scene work is the ``apply`` callable (``scene.ClipApplier`` in Blender).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from .footage import Footage, FootageError
from .shared import conventions
from .stepping import Stepped

# Fitting a frame costs about five times detecting it (measured: 0.25 vs 0.05 s on 2 cores):
# progress weighs the two phases so the bar moves evenly.
_FIT_WEIGHT = 5.0


@dataclass
class RecoverSettings:
    estimator: str = "tracker"
    asset: str = conventions.DEFAULT_ASSET_ID
    smooth: float = 1.0
    chunk: int = 150  # frames fitted together; 0 = the whole clip in one fit
    # Frames of the previous chunk sent again with each later one and faded over in the
    # scene: a chunk fitted on its own would start with a jump.
    overlap: int = 8
    window: int = 8  # frames in flight
    intrinsics: dict | None = None
    # Which person to follow when several are in view: 1 = the leftmost in the first frame
    # showing anybody; None = the most prominent one.
    person: int | None = None
    dead_after: float = 20.0  # seconds without any reply before the backend counts as gone
    adapter: str | None = None  # an adapter the backend lists, on its regressor


Apply = Callable[[dict, object, int], None]  # (rig, ClipResults, first footage index)


class RecoverSession(Stepped):
    def __init__(self, client, footage: Footage, settings: RecoverSettings,
                 apply: Apply):
        from .backend_client import BackendError

        self._backend_error = BackendError
        self.client, self.footage, self.settings, self.apply = client, footage, settings, apply
        size = settings.chunk or len(footage)
        self.chunks = [(start, min(start + size, len(footage)))
                       for start in range(0, len(footage), size)]
        self.state = "running"  # running | done | cancelled | failed
        self.status = "starting"
        self.error = ""
        self.error_code = ""  # the backend's error code when it failed on one
        self.frames_detected = 0
        self.frames_applied = 0
        self._chunk = 0
        self._server = None  # the backend session of the current chunk
        self._next = 0  # next footage index to send
        self._pending: collections.deque[int] = collections.deque()
        self._close_id: int | None = None
        self._rig: dict | None = None
        self._subject: dict | None = None  # the body the first chunk found (backend's values)
        self._intrinsics: dict | None = None  # and its camera
        self._boxes: dict[int, object] = {}  # frame index -> the followed person's box
        self._ping_id: int | None = None
        self._last_reply = time.monotonic()

    @property
    def progress(self) -> float:
        sent = len(self.footage) + sum(self._overlap(k) for k in range(len(self.chunks)))
        total = sent + _FIT_WEIGHT * len(self.footage)
        return (self.frames_detected + _FIT_WEIGHT * self.frames_applied) / total

    def step(self, budget: float = 0.05) -> bool:
        """Work for about ``budget`` seconds; False once finished, cancelled or failed."""
        if not self.running:
            return False
        try:
            self.work_for(budget, self._advance)
        except self._backend_error as exc:
            self.error_code = exc.code
            self._fail(str(exc))
        except FootageError as exc:
            self._fail(str(exc))
        return self.running

    def cancel(self) -> None:
        """Stop now; keyframes already applied stay."""
        if not self.running:
            return
        self._drop_server_session()
        self.state = "cancelled"
        self.status = f"cancelled; kept {self.frames_applied} applied frames"

    # -- the work -----------------------------------------------------------------------------

    def _advance(self) -> bool:
        """One non-blocking move; True if something happened."""
        if self._server is None:
            self._open_chunk()
            return True
        start, stop = self.chunks[self._chunk]
        moved = False
        while self._next < stop and len(self._pending) < self.settings.window:
            for index, time_s, image in self.footage.frames(self._next, self._next + 1):
                self._pending.append(self._server.send_frame(index, time_s, image))
            self._next += 1
            moved = True
        while self._pending and (reply := self._server.poll(self._pending[0])) is not None:
            self._pending.popleft()
            self._boxes[reply["index"]] = reply["result"]["detections"].get("box")
            self.frames_detected += 1
            self._heard()
            moved = True
        if self._next >= stop and not self._pending and self._close_id is None:
            self._close_id = self._server.send_close()
            self.status = self._label(f"fitting {stop - start} frames")
            return True
        if self._close_id is not None:
            reply = self._server.poll(self._close_id)
            if reply is not None:
                self._heard()
                self._finish_chunk(self._server.closed(reply))
                return True
        elif moved:
            self.status = self._label(f"detecting frame {self._next}/{len(self.footage)}")
        if not moved:
            self._check_alive()
        return moved

    def _open_chunk(self) -> None:
        start, _ = self.chunks[self._chunk]
        first = start - self._overlap(self._chunk)
        person, box = self.settings.person, None
        if person is not None and self._chunk > 0:  # go on with whom the last chunk followed
            person, box = None, self._person_box(first)
        self._server = self.client.open_session(
            estimator=self.settings.estimator, asset=self.settings.asset,
            smooth=self.settings.smooth, fps=self.footage.fps,
            intrinsics=self.settings.intrinsics or self._intrinsics, rig=self._rig is None,
            subject=self._subject, person=person, person_box=box,
            timeout=self.settings.dead_after, adapter=self.settings.adapter)
        self._next = first
        self._close_id = None
        self._heard()
        self.status = self._label("sending frames")

    def _person_box(self, index: int):
        """The followed person's box at frame ``index``, or the latest one found before it."""
        for seen in sorted((i for i in self._boxes if i <= index), reverse=True):
            box = self._boxes[seen]
            if box is not None and all(v == v for v in box):  # v != v: NaN, nobody found
                return [float(v) for v in box]
        raise self._backend_error("person_not_found", f"the person being followed was lost "
                                  f"before frame {index}; choose them again from there")

    def _finish_chunk(self, results) -> None:
        start, stop = self.chunks[self._chunk]
        self._rig = self._server.rig or self._rig
        if self._subject is None:  # later chunks fit the first one's body and camera
            self._subject = self._server.subject
            self._intrinsics = {"focal": results.focal}
        self._server = None
        self.apply(self._rig, results, start)
        self.frames_applied += stop - start
        self._chunk += 1
        if self._chunk == len(self.chunks):
            self.state = "done"
            self.status = f"done: {self.frames_applied} frames"
        else:
            self.status = self._label(f"applied {self.frames_applied} frames")

    def _overlap(self, chunk: int) -> int:
        """Frames of the chunk before that ``chunk`` sends again."""
        if chunk == 0:
            return 0
        start, stop = self.chunks[chunk - 1]
        return min(self.settings.overlap, stop - start)

    def _label(self, what: str) -> str:
        return f"chunk {self._chunk + 1}/{len(self.chunks)}: {what}"

    # -- liveness -----------------------------------------------------------------------------

    def _heard(self) -> None:
        self._last_reply = time.monotonic()

    def _check_alive(self) -> None:
        """While nothing arrives (a long fit), ping now and then: a live backend answers
        pings even mid-fit, a dead one is reported with what to do."""
        connection = self._server.connection
        if self._ping_id is not None and connection.poll(self._ping_id) is not None:
            self._ping_id = None
            self._heard()
        silent = time.monotonic() - self._last_reply
        if silent > self.settings.dead_after:
            self._drop_server_session()
            raise self._backend_error(
                "backend_gone", f"no answer from {connection.endpoint} for {silent:.0f} s: is "
                "`backend serve` still running there? Start it again (or check the address "
                "and network) and recover the rest")
        if self._ping_id is None and silent > 1.0:
            self._ping_id = connection.send({"op": "ping"})

    def _drop_server_session(self) -> None:
        server, self._server = self._server, None
        if server is not None and not server.done:
            # A dead backend cannot be told; its session times out there.
            with contextlib.suppress(self._backend_error):
                server.cancel(timeout=2.0)

    def _fail(self, message: str) -> None:
        self._drop_server_session()
        self.state = "failed"
        self.error = f"{message} (the {self.frames_applied} frames applied so far are kept)"
        self.status = f"failed after {self.frames_applied} applied frames"


class PeopleSession(Stepped):
    """Everyone in view, one after another: a ``RecoverSession`` following person 1 (the
    leftmost in the first frame showing anybody), then 2, ... until the backend says there is
    no such person; each into its own rig (``make_apply(number)``). Steps like a
    ``RecoverSession``; cancelling or a failure keeps the people already done."""

    def __init__(self, client, footage: Footage, settings: RecoverSettings,
                 make_apply: Callable[[int], Apply]):
        self.client, self.footage, self.settings = client, footage, settings
        self.make_apply = make_apply
        self.people = 0  # recovered so far
        self.state, self.error = "running", ""
        self._current = self._start(1)

    def _start(self, number: int) -> RecoverSession:
        settings = RecoverSettings(**{**self.settings.__dict__, "person": number})
        return RecoverSession(self.client, self.footage, settings, self.make_apply(number))

    @property
    def frames_applied(self) -> int:
        return self._current.frames_applied

    @property
    def progress(self) -> float:
        return self._current.progress

    @property
    def status(self) -> str:
        if not self.running:
            return self._status
        return f"person {self.people + 1}: {self._current.status}"

    def step(self, budget: float = 0.05) -> bool:
        if not self.running:
            return False
        if self._current.step(budget):
            return True
        current = self._current
        if current.state == "done":
            self.people += 1
            self._current = self._start(self.people + 1)
        elif current.error_code == "person_not_found" and self.people:
            self._end("done", f"done: {self.people} people")
        else:  # cancelled or failed: the people done so far stay
            self.error = current.error
            self._end(current.state, f"{current.state} at person {self.people + 1}; kept "
                      f"{self.people} people")
        return self.running

    def cancel(self) -> None:
        if self.running:
            self._current.cancel()
            self._end("cancelled", f"cancelled at person {self.people + 1}; kept {self.people}"
                      " people")

    def _end(self, state: str, status: str) -> None:
        self.state, self._status = state, status

"""Live capture as a stepped object: the backend opens a camera, stream or movie
(``capture.start``; the add-on only names it), answers its frames as they come, and each step
polls the answers: the newest poses the rig, and while recording every answer is keyed at the
scene frame matching its capture time (docs/live.md).

No bpy here: the scene work is ``show(rig, answers)`` and ``record(rig, answers, frames)``
(``scene.LiveRig`` in Blender); tests drive ``step`` in a loop as the panel's timer does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from .session import RecoverSettings

Show = Callable[[dict, list[dict]], None]  # (rig, answers): pose the rig with the newest
Record = Callable[[dict, list[dict], list[int]], None]  # (rig, answers, scene frames): key them


class LiveSession:
    """``source``: what the backend opens (a camera index such as "0", a device path, a
    stream URL, a movie on the backend's disk). ``fps``: the scene's frame rate, for mapping
    capture time to scene frames."""

    def __init__(self, client, source: str, settings: RecoverSettings, show: Show,
                 record: Record, fps: float):
        from .backend_client import BackendError

        self._backend_error = BackendError
        self.client, self.settings = client, settings
        self.show, self.record_keys, self.fps = show, record, fps
        self.capture = client.start_capture(source, settings.estimator, asset=settings.asset,
                                            smooth=settings.smooth, adapter=settings.adapter,
                                            timeout=settings.dead_after)
        self.state = "running"  # running | done | stopped | failed
        self.status = "starting the source ..."
        self.error = ""
        self.rig: dict | None = None
        self.answered = 0
        self.recorded = 0
        self.last_frame: int | None = None  # the scene frame of the newest recorded answer
        self._recording_from: tuple[float, int] | None = None  # (capture time, scene frame)
        self._record_asked: int | None = None  # scene frame recording should start at

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def recording(self) -> bool:
        return self._record_asked is not None or self._recording_from is not None

    def start_recording(self, scene_frame: int) -> None:
        """Key what arrives from now on, the next answer at ``scene_frame``."""
        self._record_asked, self._recording_from = scene_frame, None

    def stop_recording(self) -> None:
        self._record_asked = self._recording_from = None

    def step(self) -> bool:
        """One poll; False once the capture ended, failed or was stopped."""
        if not self.running:
            return False
        try:
            reply = self.capture.poll(rig=self.rig is None, timeout=self.settings.dead_after)
        except self._backend_error as exc:
            self._fail(str(exc))
            return False
        if self.rig is None and reply.get("rig") is not None:
            self.rig = reply["rig"]
        answers = reply["answers"]
        if answers and self.rig is not None:
            self.answered += len(answers)
            self.show(self.rig, answers)
            if self.recording:
                self._record(answers)
        source = reply.get("source") or {}
        self.status = (f"{reply['state']}: {reply['answered']} frames answered, "
                       f"{100 * source.get('drop_frac', 0.0):.0f} % dropped while busy"
                       + (f", {self.recorded} recorded" if self.recorded else ""))
        if reply["state"] == "failed":
            self._fail(reply["error"]["message"])
        elif reply["state"] in ("ended", "stopped"):
            self.state = "done"
        return self.running

    def _record(self, answers: list[dict]) -> None:
        if self._recording_from is None:
            self._recording_from = (answers[0]["time"], self._record_asked)
            self._record_asked = None
        first_time, first_frame = self._recording_from
        frames = [first_frame + round((a["time"] - first_time) * self.fps) for a in answers]
        self.record_keys(self.rig, answers, frames)
        self.recorded += len(answers)
        self.last_frame = frames[-1]

    def stop(self) -> None:
        """End the capture; what was recorded stays."""
        if self.state == "running":
            self.state = "stopped"
        # A backend gone already has stopped it; the keys are in the scene either way.
        with contextlib.suppress(self._backend_error):
            self.capture.stop(timeout=self.settings.dead_after)

    def _fail(self, message: str) -> None:
        self.state, self.error = "failed", message
        self.status = f"failed: {message}"

    def run(self, budget: float = 300.0, poll_every: float = 0.05) -> None:
        """Step until done (headless use, tests)."""
        deadline = time.monotonic() + budget
        while self.step() and time.monotonic() < deadline:
            time.sleep(poll_every)

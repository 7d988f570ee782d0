"""The "Avatar preview": after a recovery, the footage's person as a Gaussian avatar moving
with the recovered motion, rendered by the backend (``avatar.build``, ``avatar.render``)
into a folder of RGBA PNGs, one per scene frame, which the panel lays over the footage in the
camera view (``scene.add_overlay``).

A stepped object (``stepping.Stepped``): ``step`` does a little work and returns, so
Blender's modal timer drives it and headless scripts loop. No bpy here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .footage import Footage
from .stepping import Stepped

BATCH = 16  # frames per avatar.render request: a reply of a few MB, progress that moves


@dataclass
class RecoveredChunk:
    """One fitted part of the clip as the recovery applied it: its results, and the first
    footage index it keyed (earlier frames of it repeat the part before)."""

    results: object  # a ClipResults
    start: int


def overlay_file(folder: Path, index: int) -> Path:
    """The preview image of footage frame ``index`` (0-based), numbered by its scene frame
    (``scene.footage_frame``: index + 1), so Blender's image sequence needs no offset."""
    return folder / f"avatar_{index + 1:06d}.png"


def best_source_frame(chunk: RecoveredChunk) -> int:
    """The footage index the avatar is built from: the frame whose body keypoints the
    detector was surest of (a person seen whole and sharp makes the best avatar)."""
    results = chunk.results
    pose = results.detections.get("pose")
    if pose is None or not len(pose):
        return int(results.frames[0])
    return int(results.frames[int(np.argmax(np.asarray(pose)[:, :, 2].mean(axis=1)))])


def render_batches(chunks: Sequence[RecoveredChunk], batch: int = BATCH
                   ) -> list[tuple[object, list[int]]]:
    """(results, positions in it) per request: every keyed frame once (a chunk's leading
    frames that repeat the part before are left to that part)."""
    requests = []
    for chunk in chunks:
        positions = [t for t, index in enumerate(chunk.results.frames) if index >= chunk.start]
        requests += [(chunk.results, positions[i:i + batch])
                     for i in range(0, len(positions), batch)]
    return requests


class AvatarPreview(Stepped):
    def __init__(self, client, footage: Footage, chunks: Sequence[RecoveredChunk],
                 folder: Path, asset: str, max_side: int = 512, dead_after: float = 600.0):
        from .backend_client import BackendError

        self._backend_error = BackendError
        self.client, self.footage, self.folder = client, footage, Path(folder)
        self.asset, self.max_side, self.dead_after = asset, max_side, dead_after
        self.source_index = best_source_frame(chunks[0])
        self._requests = render_batches(chunks)
        self.total = sum(len(positions) for _, positions in self._requests)
        self.written = 0
        self.state = "running"  # running | done | cancelled | failed
        self.status = "avatar preview: starting"
        self.error = ""
        self._build = None  # the pending avatar.build
        self._avatar = None  # the built avatar's handle
        self._pending: int | None = None  # the avatar.render request in flight
        self._since = time.monotonic()

    @property
    def progress(self) -> float:
        return self.written / max(self.total, 1)

    def step(self, budget: float = 0.05) -> bool:
        try:
            self.work_for(budget, self._advance)
        except self._backend_error as exc:
            self._fail(str(exc))
        except OSError as exc:  # the preview folder
            self._fail(f"cannot write the preview into {self.folder}: {exc}")
        return self.running

    def cancel(self) -> None:
        if self.running:
            self._release()
            self.state = "cancelled"
            self.status = f"avatar preview cancelled; kept {self.written} frames"

    def _advance(self) -> bool:
        if self._build is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for old in self.folder.glob("avatar_*.png"):  # an earlier preview of this clip
                old.unlink()
            (_, _, image), = self.footage.frames(self.source_index, self.source_index + 1)
            self._build = self.client.send_avatar_build(image, asset=self.asset)
            self._waiting(f"building the avatar from frame {self.source_index}")
            return True
        if self._avatar is None:
            self._avatar = self._build.poll()
            if self._avatar is None:
                return self._still_waiting()
        if self._pending is None:
            if not self._requests:
                self._release()
                self.state = "done"
                self.status = f"avatar preview: {self.written} frames in {self.folder}"
                return True
            results, positions = self._requests[0]
            self._pending = self._avatar.send_render(results, positions, self.max_side)
            self._waiting(f"rendering frames {self.written + 1}-"
                          f"{self.written + len(positions)} of {self.total}")
            return True
        reply = self._avatar.connection.poll(self._pending)
        if reply is None:
            return self._still_waiting()
        rendered = self._avatar.rendered(reply)
        for index, png in zip(rendered.frames, rendered.images, strict=True):
            overlay_file(self.folder, int(index)).write_bytes(png)
        self.written += len(rendered.frames)
        self._requests.pop(0)
        self._pending = None
        return True

    def _waiting(self, what: str) -> None:
        self.status = f"avatar preview: {what}"
        self._since = time.monotonic()

    def _still_waiting(self) -> bool:
        """False (nothing happened), or a failure once the backend has been silent too long
        (an avatar request takes seconds; a lost backend never answers)."""
        if time.monotonic() - self._since > self.dead_after:
            raise self._backend_error("backend_gone", f"no avatar reply for "
                                      f"{self.dead_after:.0f} s: is the backend still running?")
        return False

    def _release(self) -> None:
        avatar, self._avatar = self._avatar, None
        if avatar is not None:
            with contextlib.suppress(self._backend_error):
                avatar.drop(timeout=2.0)

    def _fail(self, message: str) -> None:
        self._release()
        self.state = "failed"
        self.error = f"avatar preview: {message} (the recovered motion is kept)"
        self.status = f"avatar preview failed after {self.written} frames"

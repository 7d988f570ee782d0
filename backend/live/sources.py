"""Live frame sources (issue #20): a camera, a network stream or a movie played in real time,
feeding a per-frame estimator that may be slower than the source.

A daemon reader thread reads the source at its own pace into a ``LatestFrame``, a single slot:
while the estimator is busy, newer frames replace the unread one (counted as dropped), so what
the estimator gets next is always the newest frame and nothing queues up behind it. Offline
(``realtime=False``) the reader waits for each frame to be taken instead, so nothing is lost.

``parse_source`` and ``LatestFrame`` are pure Python; only ``LiveSource`` needs OpenCV.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import FootageError, InputError

if TYPE_CHECKING:
    import cv2

STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://")
# What a source that reports no frame rate (most often a camera) is taken to run at.
DEFAULT_FPS = 30.0
# How long a network stream may take to connect, and then to deliver a frame, before it counts
# as down: FFmpeg's own default is 30 s, too long for a user waiting on a typo'd URL.
NETWORK_TIMEOUT_MS = 5000

SourceKind = Literal["camera", "stream", "movie"]


class SourceError(FootageError):
    """A live source that cannot be opened or read: names the source and what to do."""


@dataclass(frozen=True)
class SourceSpec:
    """What to open: a camera (an index or a /dev path), a stream URL, or a movie file."""

    kind: SourceKind
    target: int | str

    @property
    def label(self) -> str:
        """The source as messages name it (a URL's password left out)."""
        if self.kind == "camera":
            return f"camera {self.target}"
        if self.kind == "stream":
            return f"stream {_without_password(str(self.target))!r}"
        return f"movie {self.target}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse_source(spec: str) -> SourceSpec:
    """Tell what the user's source string means, so one argument takes every kind of source:
    digits are a camera index, a /dev/ path a camera device, a URL a stream, anything else a
    movie file (which must exist)."""
    if spec.isascii() and spec.isdigit():
        return SourceSpec("camera", int(spec))
    if spec.startswith("/dev/"):
        return SourceSpec("camera", spec)
    if spec.lower().startswith(STREAM_SCHEMES):
        return SourceSpec("stream", spec)
    if not spec:
        raise SourceError("no source given: give a camera index (0), a /dev/video* device, a "
                          "stream URL (rtsp://, http://, ...) or a movie file")
    path = Path(spec)
    if not path.is_file():
        what = "is a folder, not a movie file" if path.is_dir() else "no such file"
        raise SourceError(f"{spec}: {what}; give a movie file, a camera index (0), a "
                          "/dev/video* device or a stream URL (rtsp://, http://, ...)")
    return SourceSpec("movie", spec)


@dataclass
class LiveFrame:
    """One frame as the source delivered it."""

    index: int  # position in the source, counting frames dropped or failed before it
    time: float  # seconds since the source started, on the source's clock (a movie: index/fps)
    image: np.ndarray  # (H, W, 3) uint8 RGB
    captured: float  # time.monotonic() when it was read (made available, for a paced movie)


class LatestFrame:
    """A thread-safe single slot between a reader thread and a consumer: the consumer always
    gets the newest frame, and frames it was too busy to take are dropped, never queued
    (``run_pipelined`` passes detected frames between its two stages through one too).

    With ``wait_for_consumer`` (offline use), ``put`` waits until the slot is empty instead of
    dropping, so every frame is taken.
    """

    def __init__(self, wait_for_consumer: bool = False):
        self.wait_for_consumer = wait_for_consumer
        self.produced = 0
        self.dropped = 0
        self.consumed = 0
        self._frame: LiveFrame | None = None
        self._closed = False
        self._changed = threading.Condition()

    def put(self, frame: LiveFrame) -> bool:
        """Offer a frame, replacing (dropping) an unread one; False once closed (the frame is
        discarded, and the reader should stop)."""
        with self._changed:
            if self.wait_for_consumer:
                self._changed.wait_for(lambda: self._frame is None or self._closed)
            if self._closed:
                return False
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.produced += 1
            self._changed.notify_all()
            return True

    def get(self, timeout: float) -> LiveFrame | None:
        """The newest unread frame, waiting up to ``timeout`` seconds for one; None on timeout
        or when closed with nothing left to read."""
        with self._changed:
            self._changed.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self.consumed += 1
                self._changed.notify_all()
            return frame

    def close(self) -> None:
        """No more frames: wakes a waiting ``get`` (and ``put``); an unread frame stays
        readable."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def finished(self) -> bool:
        """Closed, and every frame was taken."""
        with self._changed:
            return self._closed and self._frame is None


class LiveSource:
    """An open live source and its reader thread; use ``open_source`` to open one, and close it
    (or use it as a context manager) to stop the thread and release the capture.

    A movie with ``realtime`` plays at its own frame rate as if it were a camera (frames the
    consumer is too slow for are dropped); without it, frames come as fast as they are taken
    and none is dropped. Cameras and streams run at their own pace either way; ``realtime``
    only says whether frames the consumer has not taken are dropped or wait for it.
    """

    def __init__(self, spec: SourceSpec, realtime: bool = True,
                 size: tuple[int, int] | None = None):
        import cv2

        if size is not None and not (len(size) == 2 and all(
                isinstance(n, int) and n > 0 for n in size)):
            raise InputError(f"size {size!r}: give (width, height) as two positive integers")
        self.spec = spec
        self.size = size
        self._capture = _open_capture(spec)
        try:
            ok, image = self._capture.read()
            if not ok or image is None:
                raise SourceError(_no_first_frame(spec))
            first = self._to_rgb(image)
        except BaseException:
            self._capture.release()
            raise
        reported_fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = (reported_fps if math.isfinite(reported_fps) and reported_fps > 0
                    else DEFAULT_FPS)
        self.height, self.width = first.shape[:2]  # as delivered (after ``size``)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if spec.kind == "movie" and count > 0 else None
        self.failed = 0  # frames the source could not decode, skipped
        self._movie = spec.kind == "movie"
        self._paced = realtime and self._movie
        self._slot = LatestFrame(wait_for_consumer=not realtime)
        self._stop = threading.Event()
        # The source plays from the first ``next``: a movie is not half over, nor a camera's
        # first frame stale, by the time a slow-loading estimator asks.
        self._playing = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read_all, args=(first,), daemon=True,
                                        name=f"live {spec.label}")
        self._thread.start()

    def _to_rgb(self, image: np.ndarray) -> np.ndarray:
        """A decoded (BGR) frame as delivered: RGB, resized to ``size`` if given."""
        import cv2

        if self.size is not None and (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _read_all(self, first: np.ndarray) -> None:
        """The reader thread: delivers frames until the source ends or ``close``; an exception
        is kept for ``next`` to raise. It owns the capture and releases it."""
        try:
            while not self._playing.wait(0.1):
                if self._stop.is_set():
                    return
            self._start = time.monotonic()
            self._deliver(0, first, self._start)
            index = 0
            while not self._stop.is_set():
                index += 1
                if not self._capture.grab():
                    # A movie's undecodable frame fails its grab and the next grab goes on after
                    # it; past the frames it holds, or for a camera or stream that stops
                    # delivering, the source has ended.
                    if self.frame_count is None or index >= self.frame_count:
                        break
                    self.failed += 1
                    continue
                captured = time.monotonic()
                ok, image = self._capture.retrieve()
                if not ok or image is None:
                    self.failed += 1
                    continue
                if not self._deliver(index, self._to_rgb(image), captured):
                    break
        except Exception as error:  # surfaces from next(): never lost with the thread
            self._error = error
        finally:
            self._capture.release()
            self._slot.close()

    def _deliver(self, index: int, image: np.ndarray, captured: float) -> bool:
        if self._movie:  # its own clock
            frame_time = index / self.fps
            if self._paced:
                # Wait until the frame is due; a decoder that has fallen behind does not wait.
                due = self._start + frame_time
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return False
                captured = time.monotonic()
        else:
            frame_time = captured - self._start
        return self._slot.put(LiveFrame(index, frame_time, image, captured))

    def next(self, timeout: float = 1.0) -> LiveFrame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None on timeout or once
        the source ended and every frame was taken (``ended`` tells which). An error in the
        reader thread is raised here, after the frames read before it. The first call
        starts the source playing."""
        self._playing.set()
        frame = self._slot.get(timeout)
        if frame is None and self._error is not None:
            error = self._error
            raise SourceError(f"{self.spec.label}: reading frames failed "
                              f"({type(error).__name__}: {error}); check the source and open "
                              "it again") from error
        return frame

    @property
    def keeps_every_frame(self) -> bool:
        """Frames wait for the consumer instead of being dropped (a movie played with
        ``realtime=False``)."""
        return self._slot.wait_for_consumer

    @property
    def ended(self) -> bool:
        """The source ended (or was closed, or failed) and every frame read was taken."""
        return self._slot.finished

    def stats(self) -> dict[str, float]:
        """How many frames were delivered, dropped (consumer too slow), taken and undecodable:
        how far the estimator keeps up."""
        slot = self._slot
        return {"produced": slot.produced, "dropped": slot.dropped, "consumed": slot.consumed,
                "failed": self.failed,
                "drop_frac": slot.dropped / slot.produced if slot.produced else 0.0}

    def close(self) -> None:
        """Stop the reader thread and wait for it (it releases the capture). A blocked network
        read returns within its timeout, a camera's within the driver's."""
        self._stop.set()
        self._slot.close()
        self._thread.join()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_source(spec: str | Path | SourceSpec, realtime: bool = True,
                size: tuple[int, int] | None = None) -> LiveSource:
    """Open a live source and start reading it; a source that cannot be opened or gives no
    first frame fails here, with a ``SourceError`` saying what to do. ``size`` (width,
    height) resizes every frame."""
    return LiveSource(spec if isinstance(spec, SourceSpec) else parse_source(str(spec)),
                      realtime, size)


def _open_capture(spec: SourceSpec) -> cv2.VideoCapture:
    """The source's cv2.VideoCapture, opened, or a SourceError naming it."""
    import cv2

    # FFmpeg's own complaint would only precede the SourceError that names the source and what
    # to do; a user's OPENCV_FFMPEG_LOGLEVEL still wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if spec.kind == "stream":
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
    else:
        capture = cv2.VideoCapture(spec.target)
    if capture.isOpened():
        return capture
    capture.release()
    raise SourceError(_cannot_open(spec))


def _cannot_open(spec: SourceSpec) -> str:
    if spec.kind == "camera":
        device = isinstance(spec.target, str)
        why = ("no such device" if device and not Path(spec.target).exists()
               else "cv2 could not open it")
        return (f"no {spec.label} ({why}): check `ls /dev/video*` (and that no other program "
                f"holds it) or give another {'device' if device else 'index'}")
    if spec.kind == "stream":
        return (f"could not open {spec.label} (refused, or no answer within "
                f"{NETWORK_TIMEOUT_MS // 1000} s): check the URL and that the stream is up")
    return (f"{spec.target}: cannot be opened as a video (an unsupported format, a truncated "
            "file, or no video stream in it?): check that it plays in a video player, or "
            "re-export it (e.g. H.264 .mp4)")


def _no_first_frame(spec: SourceSpec) -> str:
    if spec.kind == "camera":
        return (f"{spec.label} opened but gave no frame: check that no other program is using "
                "it, or give another camera")
    if spec.kind == "stream":
        return (f"{spec.label} opened but gave no frame within {NETWORK_TIMEOUT_MS // 1000} s: "
                "check that it is sending video")
    return (f"{spec.target}: its first frame cannot be decoded (truncated, or not really a "
            "video?): check that it plays in a video player, or re-export it")

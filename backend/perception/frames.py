"""Frame sources: a video file, a folder of images, or one image, with frame count and rate
known before the first frame is read.

A frame that fails to decode is reported with its index and then skipped, or fails the run
(``on_error="fail"``); it is never silently replaced by a neighbour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import FootageError
from ..footage_files import frame_files, is_movie, is_still, movie_names, still_names

OnError = Literal["skip", "fail"]


@dataclass
class Frame:
    index: int  # position in the footage (indices of skipped frames are never reused)
    time: float  # seconds from the start
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class FrameSource:
    path: Path
    frame_count: int
    fps: float
    width: int
    height: int
    on_error: OnError = "skip"
    failures: list[tuple[int, str]] = field(default_factory=list)  # (index, why), as met

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _failed(self, index: int, why: str) -> None:
        if self.on_error == "fail":
            raise FootageError(f"{self.path}: frame {index} {why}")
        self.failures.append((index, why))


class ImageFiles(FrameSource):
    """Still images, in natural order (``footage_files.natural_key``), at a given rate."""

    def __init__(self, path: Path, files: list[Path], fps: float, on_error: OnError):
        import cv2

        first = None
        for candidate in files:
            first = cv2.imread(str(candidate))
            if first is not None:
                break
        if first is None:
            what = ("cannot be decoded as an image" if files == [path] else
                    f"holds {len(files)} image file(s), none of which can be decoded")
            raise FootageError(f"{path}: {what} (truncated, or not really the format its name "
                               "says?): re-export the footage or pick another")
        super().__init__(path, len(files), fps, first.shape[1], first.shape[0], on_error)
        self.files = files

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        for index, file in enumerate(self.files):
            image = cv2.imread(str(file))
            if image is None:
                self._failed(index, f"({file.name}) cannot be decoded as an image")
                continue
            yield Frame(index, index / self.fps, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


class VideoFile(FrameSource):
    def __init__(self, path: Path, on_error: OnError):
        import cv2

        # FFmpeg's own complaint ("moov atom not found") would only precede the FootageError
        # that names the file and what to do; a user's OPENCV_FFMPEG_LOGLEVEL still wins.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise FootageError(f"{path}: cannot be opened as a video (an unsupported format, a "
                               "truncated file, or no video stream in it?): check that it "
                               "plays in a video player, or re-export it (e.g. H.264 .mp4)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        if count <= 0 or width <= 0:
            raise FootageError(f"{path}: the video reports no frames (no video stream?): "
                               "re-export it with its picture")
        super().__init__(path, count, fps, width, height, on_error)

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            for index in range(self.frame_count):
                if not capture.grab():
                    # The container promised more frames than the stream holds (truncated file):
                    # report every missing one, then stop.
                    for missing in range(index, self.frame_count):
                        self._failed(missing, "is missing (the stream ended early)")
                    return
                ok, image = capture.retrieve()
                if not ok or image is None:
                    self._failed(index, "cannot be decoded")
                    continue
                yield Frame(index, index / self.fps, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()


def open_footage(path: str | Path, fps: float = 30.0, on_error: OnError = "skip"
                 ) -> FrameSource:
    """A video file, a folder of images (read at ``fps``), or a single image."""
    path = Path(path)
    if not path.exists():
        raise FootageError(f"{path}: no such file or folder; give a video, an image or a "
                           "folder of images")
    if path.is_file() and path.stat().st_size == 0:
        raise FootageError(f"{path}: the file is empty (0 bytes); copy or export it again")
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise FootageError(f"{path}: the folder holds no images ({still_names()})")
        return ImageFiles(path, files, fps, on_error)
    if is_still(path):
        return ImageFiles(path, [path], fps, on_error)
    if is_movie(path):
        return VideoFile(path, on_error)
    raise FootageError(f"{path}: unknown footage type {path.suffix!r}; use a video "
                       f"({movie_names()}), an image or a folder of images")

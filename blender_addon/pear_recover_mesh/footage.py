"""Footage as the frames a session sends: image files go to the backend as they are on disk
(their bytes, nothing decoded in Blender). Which files are frames, and their order, follow
the backend's own rules (``footage_files``), so ``backend fit`` reads a folder alike. No bpy
here; movie files are read through Blender in ``movie.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .shared import errors, footage_files

_NUMBER = re.compile(r"(\d+)")


# Footage the add-on cannot send: the backend's class, so callers catch one kind either way.
FootageError = errors.FootageError


class Footage(Protocol):
    """What a session reads frames from: an ``ImageSequence`` or a ``movie.MovieFrames``."""

    fps: float

    def __len__(self) -> int: ...

    def frames(self, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, float, dict]]: ...

    def close(self) -> None: ...


@dataclass
class ImageSequence:
    paths: list[Path]
    fps: float = 30.0

    def __len__(self) -> int:
        return len(self.paths)

    def close(self) -> None:
        """Nothing to release (movies hold a decoder scene)."""

    def frames(self, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, float, dict]]:
        """(index, time in seconds, encoded image map) for frames ``start`` to ``stop``."""
        for index in range(start, len(self.paths) if stop is None else stop):
            path = self.paths[index]
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise FootageError(f"frame {index} ({path}) cannot be read: {exc}") from None
            image_format = footage_files.STILL_FORMATS[path.suffix.lower()]
            yield index, index / self.fps, {"format": image_format, "data": data}


def file_number(path: Path) -> int | None:
    """The frame number in a file name, as Blender reads it: the last run of digits."""
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else None


def check_range(first: int, last: int | None, total: int) -> tuple[int, int]:
    """``first``/``last`` (inclusive, 0-based; ``last`` None: to the end) within ``total``
    frames, or a FootageError saying what the footage holds."""
    last = total - 1 if last is None else min(last, total - 1)
    if not 0 <= first <= last:
        raise FootageError(f"frame range {first}-{last} is empty; the footage has "
                           f"{total} frames")
    return first, last


def image_sequence(path: str | Path, fps: float = 30.0, first: int = 0,
                   last: int | None = None) -> ImageSequence:
    """A folder of still frames (``footage_files.frame_files``: its order), or one image;
    ``first``/``last`` (inclusive, 0-based) pick a range."""
    path = Path(path)
    if path.is_dir():
        if not (paths := footage_files.frame_files(path)):
            raise FootageError(f"{path} holds no frames ({footage_files.still_names()})")
    elif path.is_file():
        if not footage_files.is_still(path):
            raise FootageError(f"{path.name}: footage is a folder of frames, an image "
                               f"({footage_files.still_names()}) or a movie "
                               f"({footage_files.movie_names()})")
        paths = [path]
    else:
        raise FootageError(f"{path} does not exist")
    first, last = check_range(first, last, len(paths))
    return ImageSequence(paths[first:last + 1], fps)

"""Footage as the frames a session sends: image files go to the backend as they are on disk
(JPEG/PNG bytes, nothing decoded in Blender). No bpy here; movie files are read through
Blender in ``movie.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

IMAGE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
# Blender's own footage formats that are not stills (what its file browser calls movies).
MOVIE_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv",
                  ".flv", ".wmv", ".dv", ".mxf", ".gif"}
_NUMBER = re.compile(r"(\d+)")


class FootageError(ValueError):
    """Footage the add-on cannot send: says what and how to fix it."""


class Footage(Protocol):
    """What a session reads frames from: an ``ImageSequence`` or a ``movie.MovieFrames``."""

    fps: float

    def __len__(self) -> int: ...

    def frames(self, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, float, dict]]: ...

    def close(self) -> None: ...


def _natural_key(path: Path) -> list:
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in _NUMBER.split(path.name)]


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
            yield index, index / self.fps, {"format": IMAGE_FORMATS[path.suffix.lower()],
                                            "data": data}


def frame_files(folder: Path) -> list[Path]:
    """A folder's JPEG/PNG frames in name order, numbers compared as numbers."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_FORMATS),
                  key=_natural_key)


def file_number(path: Path) -> int | None:
    """The frame number in a file name, as Blender reads it: the last run of digits."""
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else None


def is_movie(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MOVIE_SUFFIXES


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
    """A folder of JPEG/PNG frames (name order, numbers compared as numbers), or one image;
    ``first``/``last`` (inclusive, 0-based) pick a range."""
    path = Path(path)
    if path.is_dir():
        if not (paths := frame_files(path)):
            raise FootageError(f"{path} holds no .jpg or .png frames")
    elif path.is_file():
        if path.suffix.lower() not in IMAGE_FORMATS:
            raise FootageError(f"{path.name}: footage is a folder of frames, a JPEG or PNG "
                               f"image, or a movie ({', '.join(sorted(MOVIE_SUFFIXES))})")
        paths = [path]
    else:
        raise FootageError(f"{path} does not exist")
    first, last = check_range(first, last, len(paths))
    return ImageSequence(paths[first:last + 1], fps)

"""Footage as the frames a session sends: image files go to the backend as they are on disk
(JPEG/PNG bytes, nothing decoded in Blender). No bpy here.

Movie files: Blender's Python cannot read a movie's frames headless, and the add-on bundles
no video decoder; export them as an image sequence first (or bake them with ``backend bake``,
which decodes video itself).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
_NUMBER = re.compile(r"(\d+)")


class FootageError(ValueError):
    """Footage the add-on cannot send: says what and how to fix it."""


def _natural_key(path: Path) -> list:
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in _NUMBER.split(path.name)]


@dataclass
class ImageSequence:
    paths: list[Path]
    fps: float = 30.0

    def __len__(self) -> int:
        return len(self.paths)

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


def image_sequence(path: str | Path, fps: float = 30.0, first: int = 0,
                   last: int | None = None) -> ImageSequence:
    """A folder of JPEG/PNG frames (name order, numbers compared as numbers), or one image;
    ``first``/``last`` (inclusive, 0-based) pick a range."""
    path = Path(path)
    if path.is_dir():
        paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_FORMATS),
                       key=_natural_key)
        if not paths:
            raise FootageError(f"{path} holds no .jpg or .png frames")
    elif path.is_file():
        if path.suffix.lower() not in IMAGE_FORMATS:
            raise FootageError(f"{path.name}: the add-on sends JPEG or PNG frames; for a movie, "
                               "render it to an image sequence first, or run `backend bake "
                               f"{path.name} --out DIR` where the backend is installed")
        paths = [path]
    else:
        raise FootageError(f"{path} does not exist")
    last = len(paths) - 1 if last is None else min(last, len(paths) - 1)
    if not 0 <= first <= last:
        raise FootageError(f"frame range {first}-{last} is empty; the footage has "
                           f"{len(paths)} frames")
    return ImageSequence(paths[first:last + 1], fps)

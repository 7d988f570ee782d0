"""Which files are footage, and in which order frames in a folder come: one rule for ``backend
fit``/``bake`` and for the Blender add-on, so the same folder is the same clip on both sides.
Standard library only: the Blender extension carries a copy (``scripts/build_extension.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

# Still-image suffixes -> the protocol's image ``format`` their bytes are sent as (the add-on
# sends a still's file as it is; the server decodes every one of these).
STILL_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp",
                 ".tif": "tiff", ".tiff": "tiff", ".webp": "webp"}
# Movie suffixes: what Blender's file browser calls movies (the add-on decodes them through
# Blender, the backend through OpenCV's FFmpeg).
MOVIE_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".ogv", ".flv", ".wmv", ".dv", ".mxf", ".gif"})
_NUMBER = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[list, str]:
    """Sort key of a frame file: runs of digits compared as numbers, the rest regardless of
    case (frame2.png before Frame10.png); names equal but for case fall back to the exact name,
    so every listing of a folder agrees."""
    parts = [int(part) if part.isdigit() else part.casefold()
             for part in _NUMBER.split(path.name)]
    return parts, path.name


def is_still(path: str | Path) -> bool:
    return Path(path).suffix.lower() in STILL_FORMATS


def is_movie(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MOVIE_SUFFIXES


def frame_files(folder: Path) -> list[Path]:
    """A folder's still frames (``STILL_FORMATS``) in ``natural_key`` order."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_still(p)),
                  key=natural_key)


def still_names() -> str:
    """The still suffixes, for messages: ".bmp, .jpeg, ..."."""
    return ", ".join(sorted(STILL_FORMATS))


def movie_names() -> str:
    """The movie suffixes, for messages."""
    return ", ".join(sorted(MOVIE_SUFFIXES))

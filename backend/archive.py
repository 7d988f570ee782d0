"""Versioned data files: arrays plus a ``meta.json`` entry in one ``.npz``, written atomically
and read without unpickling. Body-model assets and clip results both use it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputError

META_KEY = "meta.json"


class ArchiveError(InputError):
    """A file that is not a readable archive; callers re-raise it as their own typed error."""


def save_archive(path: str | Path, arrays: dict[str, np.ndarray], meta: dict,
                 compressed: bool = False) -> Path:
    """Write arrays and metadata; a crash never leaves a half-written file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta, indent=1).encode(), dtype=np.uint8)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **payload)
    partial.replace(path)
    return path


def load_archive(path: str | Path, what: str) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) of an archive; ``what`` names the kind of file in error messages."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path}: not a readable {what} (.npz) file: {exc}") from exc
    if META_KEY not in arrays:
        raise ArchiveError(f"{path}: no {META_KEY} entry; not a {what} file")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path}: {META_KEY} is not valid JSON: {exc}") from exc
    return arrays, meta

"""A clip's outputs appear whole or not at all, and a rerun knows which clips are done.

A worker writes a clip's files into a staging folder inside the output folder (same file
system, so moving is a rename), then ``publish`` renames each into place and writes the clip's
record ``<clip>.done.json`` last, by rename too. A clip is finished when its record exists,
was made with the same settings, and every file it lists is there with its size. A killed
worker or a Ctrl-C leaves at most a staging folder, which ``clear_staging`` removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

STAGING = ".staging"
RECORD_SUFFIX = ".done.json"


def settings_key(settings: dict) -> str:
    """A short hash of what decides a clip's outputs (estimator, formats, frames ...)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}{RECORD_SUFFIX}"


def staging_folder(out_dir: Path, name: str) -> Path:
    """A new, empty folder for one attempt at clip ``name`` (a retried attempt gets another)."""
    folder = out_dir / STAGING / f"{name}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def publish(staged: dict[str, Path], out_dir: Path, name: str, key: str,
            summary: dict) -> dict[str, Path]:
    """Move the staged files (kind -> path) into ``out_dir``, then write the clip's record
    (``summary``: frames, seconds ... kept in it); returns the published files by kind."""
    published = {}
    for kind, path in staged.items():
        target = out_dir / path.name
        os.replace(path, target)
        published[kind] = target
    record = {"clip": name, "settings": key, **summary,
              "files": {kind: {"name": path.name, "bytes": path.stat().st_size}
                        for kind, path in published.items()}}
    _write_atomically(record_path(out_dir, name), json.dumps(record, indent=1))
    if staged:  # the attempt's own folder, now empty, and the staging one if no other is left
        attempt = next(iter(staged.values())).parent
        shutil.rmtree(attempt, ignore_errors=True)
        with contextlib.suppress(OSError):
            attempt.parent.rmdir()
    return published


def finished(out_dir: Path, name: str, key: str) -> dict | None:
    """The record of clip ``name`` if its outputs are complete and were made with settings
    ``key``, else None (never baked, baked otherwise, or a file lost or cut short since)."""
    try:
        record = json.loads(record_path(out_dir, name).read_text())
    except (OSError, ValueError):
        return None
    if record.get("settings") != key:
        return None
    for entry in record.get("files", {}).values():
        path = out_dir / entry["name"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
    return record


def forget(out_dir: Path, name: str) -> None:
    """Drop clip ``name``'s record (``--force``: it is made again)."""
    record_path(out_dir, name).unlink(missing_ok=True)


def clear_staging(out_dir: Path) -> None:
    """Remove what unfinished attempts left."""
    shutil.rmtree(out_dir / STAGING, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    partial.write_text(text)
    os.replace(partial, path)

"""What a cluster run tells at the end: a table for the person at the terminal, a JSON file for
the pipeline that launched it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .ray_run import ClipOutcome


def summary_table(outcomes: Sequence[ClipOutcome]) -> str:
    """One row per clip: clip, frames, frames/s, seconds, status (with the reason it failed)."""
    rows = [("clip", "frames", "fps", "time", "status")]
    for o in outcomes:
        status = o.status if o.status != "failed" else f"failed: {o.error}"
        if o.status == "skipped":
            status = "skipped (finished before; --force redoes it)"
        rows.append((o.clip, str(o.frames), f"{o.fps:.1f}" if o.status == "done" else "-",
                     f"{o.seconds:.1f} s", status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        return "  ".join([*cells, row[4]]).rstrip()

    return "\n".join(line(row) for row in rows)


def write_report(outcomes: Sequence[ClipOutcome], path: Path, seconds: float,
                 settings: dict) -> Path:
    """The run as JSON: the settings, the wall time, and each clip's outcome and files."""
    report = {"seconds": round(seconds, 2), "settings": settings,
              "clips": [{"clip": o.clip, "footage": o.footage, "status": o.status,
                         "frames": o.frames, "seconds": round(o.seconds, 2),
                         "fps": round(o.fps, 2), "error": o.error, "files": o.files,
                         "notes": o.notes} for o in outcomes]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return path

"""The result file of a fitted clip (``backend fit -o RESULT.npz``), versioned; format in
docs/results.md. Later stages (server, Blender bake, training data) read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .archive import ArchiveError, load_archive, save_archive
from .conventions import MODEL_TO_CAMERA
from .errors import InputError

FORMAT_NAME = "pear-results"
# 2: det/pose_world (MediaPipe's metric 3D pose) and contacts; version 1 files read the same,
# without them.
FORMAT_VERSION = 2
_PARAM, _DETECTION = "param/", "det/"


class ResultsError(InputError):
    """A result file that cannot be read: says which file and what is wrong."""


@dataclass
class ClipResults:
    asset_id: str
    spec_hash: str
    frames: np.ndarray  # (T,) footage frame indices
    times: np.ndarray  # (T,) seconds
    params: dict[str, np.ndarray]  # name -> (T, ...) per frame or (1, ...) per clip
    cam_t: np.ndarray  # (T, 3) camera-frame translation (OpenCV axes, metres)
    focal: float  # pixels
    center: tuple[float, float]  # principal point, pixels
    width: int
    height: int
    detections: dict[str, np.ndarray] = field(default_factory=dict)  # part -> (T, K, 3)
    info: dict = field(default_factory=dict)  # footage, timings, rates, errors, settings
    # (T, 4) uint8: 1 where each of conventions.FOOT_JOINTS touches the ground, when the
    # tracker's contact stage ran
    contacts: np.ndarray | None = None


def save_results(results: ClipResults, path: str | Path) -> Path:
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "asset_id": results.asset_id, "spec_hash": results.spec_hash,
        "focal": results.focal, "center": list(results.center),
        "width": results.width, "height": results.height,
        "model_to_camera": [list(row) for row in MODEL_TO_CAMERA],
        "info": results.info,
    }
    arrays = {"frames": results.frames, "times": results.times, "cam_t": results.cam_t}
    arrays.update({_PARAM + k: v for k, v in results.params.items()})
    arrays.update({_DETECTION + k: v for k, v in results.detections.items()})
    if results.contacts is not None:
        arrays["contacts"] = np.asarray(results.contacts, np.uint8)
    return save_archive(path, arrays, meta, compressed=True)


def load_results(path: str | Path) -> ClipResults:
    try:
        arrays, meta = load_archive(path, "result")
    except ArchiveError as exc:
        raise ResultsError(str(exc)) from exc
    if meta.get("format") != FORMAT_NAME:
        raise ResultsError(f"{path}: format {meta.get('format')!r} is not {FORMAT_NAME!r}")
    if meta["format_version"] > FORMAT_VERSION:
        raise ResultsError(f"{path}: result format {meta['format_version']} is newer than this "
                           f"backend reads ({FORMAT_VERSION}); update the backend")
    frames = len(arrays["frames"])
    params = {k[len(_PARAM):]: v for k, v in arrays.items() if k.startswith(_PARAM)}
    for name, value in params.items():
        if value.shape[0] not in (1, frames):
            raise ResultsError(f"{path}: parameter {name!r} has {value.shape[0]} rows for "
                               f"{frames} frames")
    return ClipResults(
        asset_id=meta["asset_id"], spec_hash=meta["spec_hash"], frames=arrays["frames"],
        times=arrays["times"], params=params, cam_t=arrays["cam_t"], focal=meta["focal"],
        center=tuple(meta["center"]), width=meta["width"], height=meta["height"],
        detections={k[len(_DETECTION):]: v for k, v in arrays.items()
                    if k.startswith(_DETECTION)},
        info=meta.get("info", {}), contacts=arrays.get("contacts"),
    )


def results_to_message(results: ClipResults) -> dict:
    """The result as plain maps and arrays, for the server's ``session.close`` reply."""
    return {"asset_id": results.asset_id, "spec_hash": results.spec_hash,
            "frames": results.frames, "times": results.times, "params": results.params,
            "cam_t": results.cam_t, "focal": float(results.focal),
            "center": [float(c) for c in results.center], "width": int(results.width),
            "height": int(results.height), "detections": results.detections,
            "info": _plain(results.info),
            **({} if results.contacts is None else {"contacts": results.contacts})}


def results_from_message(message: dict) -> ClipResults:
    """Inverse of ``results_to_message`` (after the protocol decoded its arrays)."""
    try:
        return ClipResults(
            asset_id=message["asset_id"], spec_hash=message["spec_hash"],
            frames=np.asarray(message["frames"]), times=np.asarray(message["times"]),
            params={k: np.asarray(v) for k, v in message["params"].items()},
            cam_t=np.asarray(message["cam_t"]), focal=float(message["focal"]),
            center=tuple(message["center"]), width=int(message["width"]),
            height=int(message["height"]),
            detections={k: np.asarray(v) for k, v in message.get("detections", {}).items()},
            info=message.get("info", {}),
            contacts=None if message.get("contacts") is None
            else np.asarray(message["contacts"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(f"a result message without a valid {exc}") from None


def _plain(value):
    """JSON-like copy: tuples become lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

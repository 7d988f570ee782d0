"""A long clip as parts fitted on their own, and the parts joined back into one clip.

The parts are the Blender add-on's chunks (``RecoverSession``): part k keys frames
``[start, stop)`` and is fitted from ``overlap`` frames earlier, so that it can fade in over the
frames the part before it also holds. Every part after the first fits the first part's body
(its per-subject parameters) and camera, so the clip keeps one body and one focal length.
Pure logic: no Ray, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..results import ClipResults


@dataclass(frozen=True)
class Part:
    index: int  # position among the clip's parts
    start: int  # first footage frame it keys
    stop: int  # one past the last
    fit_from: int  # first footage frame it fits: ``start`` less the overlap with the part before


def plan_parts(frames: int, size: int, overlap: int) -> list[Part]:
    """``frames`` frames as parts of ``size`` (0: one part), each after the first fitted from
    ``overlap`` frames earlier (at most the part before's length)."""
    if frames <= 0:
        raise ValueError(f"a clip of {frames} frames has no parts")
    if size == 1 or size < 0 or overlap < 0:
        raise ValueError("a part holds 2 frames or more (0: the whole clip) and overlaps the "
                         "one before by 0 or more")
    size = size or frames
    parts = []
    for index, start in enumerate(range(0, frames, size)):
        reach = 0 if index == 0 else min(overlap, size)
        parts.append(Part(index, start, min(start + size, frames), start - reach))
    return parts


def join_parts(parts: Sequence[ClipResults]) -> ClipResults:
    """One clip from parts in order: where a part repeats frames of the one before, its
    per-frame values fade in over them (weights rising as the add-on's ``crossfade``; rotations
    as axis-angle, which a fade between two estimates of one pose a frame apart allows);
    detections and contacts of repeated frames are the earlier part's, which saw the frames
    before them. Per-subject values, camera and image size are the first part's (later parts
    fitted that body)."""
    joined = parts[0]
    for later in parts[1:]:
        joined = _join_two(joined, later)
    return joined


def _join_two(earlier: ClipResults, later: ClipResults) -> ClipResults:
    shared = np.isin(later.frames, earlier.frames)
    if shared.any() and not shared[: shared.sum()].all():
        raise ValueError("a part's repeated frames must come first")
    repeated = int(shared.sum())
    keep = np.searchsorted(earlier.frames, later.frames[0]) if repeated else len(earlier.frames)
    weight = (np.arange(repeated) + 1.0) / (repeated + 1.0)  # of ``later``, rising

    def per_frame(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        w = weight.reshape(-1, *[1] * (old.ndim - 1)).astype(old.dtype)
        faded = (1 - w) * old[keep:keep + repeated] + w * new[:repeated]
        return np.concatenate([old[:keep], faded, new[repeated:]])

    def earlier_first(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        return np.concatenate([old, new[repeated:]])

    several = max(len(earlier.frames), len(later.frames)) > 1  # a (1, ...) row is per subject
    params = {name: value if several and value.shape[0] == later.params[name].shape[0] == 1
              else per_frame(value, later.params[name])
              for name, value in earlier.params.items()}
    contacts = (None if earlier.contacts is None or later.contacts is None
                else earlier_first(earlier.contacts, later.contacts))
    info = dict(earlier.info, parts=earlier.info.get("parts", 1) + 1)
    for timing in ("detect_s", "fit_s", "regressor_s"):
        if timing in earlier.info and timing in later.info:
            info[timing] = round(earlier.info[timing] + later.info[timing], 3)
    return replace(
        earlier, frames=earlier_first(earlier.frames, later.frames),
        times=earlier_first(earlier.times, later.times), params=params,
        cam_t=per_frame(earlier.cam_t, later.cam_t),
        detections={part: earlier_first(value, later.detections[part])
                    for part, value in earlier.detections.items() if part in later.detections},
        info=info, contacts=contacts)

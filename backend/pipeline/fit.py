"""``backend fit``: footage -> MediaPipe Holistic (-> regressor) -> estimator -> result file.

Returns what it did (``FootageFit``) and prints nothing: the command line reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..body.asset import Asset
from ..body.model import BodyModel
from ..perception.frames import OnError, open_footage
from ..perception.holistic import feed
from ..results import ClipResults, save_results
from .recovery import ClipRecovery, load_regressor, uses_regressor

# (what is being done, steps done, steps in all)
Progress = Callable[[str, int, int], None]


@dataclass
class FootageFit:
    """A fitted clip, what it cost and what was written."""

    results: ClipResults
    estimator: str
    width: int
    height: int
    fps: float
    seconds: float  # decoding to results (the overlay not included)
    detect_s: float  # decoding + detection (+ the regressor)
    fit_s: float  # the estimator over the clip
    reprojection_px: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)  # "results", "overlay"

    def summary(self) -> list[str]:
        """What a person reads after a fit: speed, detection rates, errors, files."""
        info, frames = self.results.info, max(len(self.results.frames), 1)
        regressor = (f", of which the regressor {info['regressor_s'] / frames:.3f}"
                     if uses_regressor(self.estimator) else "")
        lines = [f"{len(self.results.frames)} frames ({self.width}x{self.height}, "
                 f"{self.fps:.1f} fps) in {self.seconds:.1f} s = {self.seconds / frames:.3f} "
                 f"s/frame (detection {self.detect_s / frames:.3f}{regressor}, "
                 f"{self.estimator} {self.fit_s / frames:.3f})",
                 "found: " + _percentages(info["detection_rates"])]
        if info.get("holistic_only_rates"):
            lines.append(f"  (Holistic alone: {_percentages(info['holistic_only_rates'])}; the "
                         "rest from upscaled crops)")
        lines.append("mean reprojection error: " + ", ".join(
            f"{part} {error:.1f} px" for part, error in self.reprojection_px.items()))
        if failures := info.get("decode_failures"):
            lines.append(f"skipped {len(failures)} undecodable frame(s): "
                         f"{[index for index, _ in failures][:20]}")
        if "results" in self.files:
            lines.append(f"wrote {self.files['results']}")
        if "overlay" in self.files:
            lines.append(f"wrote {self.files['overlay']} (the fitted mesh over the footage)")
        return lines


def _percentages(rates: dict[str, float]) -> str:
    return ", ".join(f"{part} {100 * rate:.1f}%" for part, rate in rates.items())


def fit_footage(footage: str | Path, asset: Asset, out: str | Path | None = None,
                smooth: float = 1.0, on_error: OnError = "skip", focal: float | None = None,
                max_frames: int | None = None, overlay: str | Path | None = None,
                progress: Progress | None = None, person: int | None = None,
                estimator: str = "tracker", checkpoint: str | Path | None = None,
                contact: bool = True, first: int = 0,
                subject: dict[str, np.ndarray] | None = None, regressor=None,
                face_scores: bool = True,
                adapter: str | Path | None = None) -> FootageFit:
    """Footage -> detections -> the estimator (``recovery.py``) -> results, saved to ``out``
    unless None, with the mesh drawn over the footage into ``overlay`` if given. ``person``:
    which person to follow (``ClipDetector``); ``checkpoint``: the regressor's (default: the
    body model's in ``$PEAR_HOME/checkpoints``) with ``adapter`` on it if given, or
    ``regressor`` already loaded;
    ``contact``: keep feet that touch the ground still (``TrackerConfig.contact``);
    ``face_scores``: take MediaPipe's facial blendshape scores as evidence for the expressions
    (``perception/face_scores.py``).
    ``first``: the footage frame to start from (frames ``first`` to ``max_frames``, a part of
    a clip); ``subject``: per-subject parameters to hold (another part's body)."""
    start = time.perf_counter()
    # Checked before any frame is decoded: a missing checkpoint is the set-up, not the clip.
    if regressor is None and uses_regressor(estimator):
        regressor = load_regressor(asset, checkpoint, adapter=adapter)
    source = open_footage(footage, on_error=on_error)
    total = min(source.frame_count, max_frames or source.frame_count)

    def limited():
        for frame in source:  # decoded in order: seeking is not frame-exact in every codec
            if frame.index >= total:
                return
            if frame.index >= first:
                yield frame

    detect_start = time.perf_counter()
    recovery = ClipRecovery(source.width, source.height, asset, estimator=estimator,
                            regressor=regressor, focal=focal, person=person,
                            face_scores=face_scores)
    label = "detecting (MediaPipe)" if regressor is None else "detecting + regressor"
    feed(recovery, limited(),
         (lambda n: progress(label, n, total - first)) if progress else None)
    detect_s = time.perf_counter() - detect_start
    results, fit = recovery.finish(
        source.fps, smooth=smooth, contact=contact, subject=subject,
        progress=(lambda stage, step, steps: progress(f"fitting: {stage}", step, steps))
        if progress else None)
    results.info.update({"footage": str(Path(footage).resolve()),
                         "footage_frames": source.frame_count,
                         "decode_failures": source.failures, "detect_s": round(detect_s, 2),
                         "person": person})
    files = {}
    if out is not None:
        files["results"] = save_results(results, out)
    seconds = time.perf_counter() - start
    if overlay:
        from .overlay import write_overlay

        files["overlay"] = write_overlay(results, BodyModel(asset), overlay)
    return FootageFit(results, estimator, source.width, source.height, source.fps, seconds,
                      detect_s, fit.seconds, fit.reprojection_px, files)

"""``backend fit``: footage -> MediaPipe Holistic (-> regressor) -> estimator -> result file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..body import registry
from ..body.model import BodyModel
from ..perception.frames import OnError, open_footage
from ..perception.holistic import feed
from ..results import ClipResults, save_results
from .recovery import ClipRecovery, load_regressor, uses_regressor


def _bar(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def fit_footage(footage: str | Path, out: str | Path | None,
                asset_id: str = registry.DEFAULT_ASSET_ID,
                smooth: float = 1.0, on_error: OnError = "skip", focal: float | None = None,
                max_frames: int | None = None, overlay: str | Path | None = None,
                progress: bool = True, person: int | None = None,
                estimator: str = "tracker", checkpoint: str | Path | None = None
                ) -> ClipResults:
    """Footage -> detections -> the estimator (``recovery.py``) -> results (saved to ``out``
    unless None), with a summary on stdout. ``person``: which person to follow
    (``ClipDetector``); ``checkpoint``: the regressor's (default: the body model's in
    ``$PEAR_HOME/checkpoints``)."""
    start = time.perf_counter()
    asset = registry.load(asset_id, progress=lambda m: print(m, file=sys.stderr))
    # Checked before any frame is decoded: a missing checkpoint is the set-up, not the clip.
    regressor = load_regressor(asset, checkpoint) if uses_regressor(estimator) else None
    source = open_footage(footage, on_error=on_error)
    total = min(source.frame_count, max_frames or source.frame_count)

    def limited():
        for frame in source:
            if frame.index >= total:
                return
            yield frame

    detect_start = time.perf_counter()
    recovery = ClipRecovery(source.width, source.height, asset, estimator=estimator,
                            regressor=regressor, focal=focal, person=person)
    label = "detecting (MediaPipe)" if regressor is None else "detecting + regressor"
    feed(recovery, limited(), (lambda n: _bar(label, n, total)) if progress else None)
    detect_s = time.perf_counter() - detect_start
    results, fit = recovery.finish(
        source.fps, smooth=smooth,
        progress=(lambda label, step, steps: _bar(f"fitting: {label}", step, steps))
        if progress else None)
    rates, first_pass = results.info["detection_rates"], results.info["holistic_only_rates"]
    results.info.update({"footage": str(Path(footage).resolve()),
                         "footage_frames": source.frame_count,
                         "decode_failures": source.failures, "detect_s": round(detect_s, 2),
                         "person": person})
    if out is not None:
        save_results(results, out)
    elapsed = time.perf_counter() - start
    frames = len(results.frames)
    regressor_note = (f", of which the regressor {results.info['regressor_s'] / frames:.3f}"
                      if regressor is not None else "")
    print(f"{frames} frames ({source.width}x{source.height}, {source.fps:.1f} fps) in "
          f"{elapsed:.1f} s = {elapsed / frames:.3f} s/frame (detection {detect_s / frames:.3f}"
          f"{regressor_note}, {estimator} {fit.seconds / frames:.3f})")
    print("found: " + ", ".join(f"{part} {100 * rate:.1f}%" for part, rate in rates.items()))
    if first_pass:
        print("  (Holistic alone: " + ", ".join(
            f"{part} {100 * rate:.1f}%" for part, rate in first_pass.items())
            + "; the rest from upscaled crops)")
    print("mean reprojection error: " + ", ".join(
        f"{part} {error:.1f} px" for part, error in fit.reprojection_px.items()))
    if source.failures:
        print(f"skipped {len(source.failures)} undecodable frame(s): "
              f"{[index for index, _ in source.failures][:20]}")
    if out is not None:
        print(f"wrote {out}")
    if overlay:
        from .overlay import write_overlay

        write_overlay(results, BodyModel(asset), overlay)
        print(f"wrote {overlay} (the fitted mesh over the footage)")
    return results


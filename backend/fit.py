"""``backend fit``: footage -> MediaPipe Holistic -> tracker -> result file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from .body import registry
from .body.asset import Asset
from .body.model import BodyModel
from .fitting.tracker import FitResult, Keypoints, Progress, Tracker, TrackerConfig
from .perception.frames import OnError, open_footage
from .perception.holistic import ClipDetections, detect_clip
from .results import ClipResults, save_results
from .temporal.postprocess import postprocess


def _bar(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def recover_clip(detections: ClipDetections, fps: float, asset: Asset, smooth: float = 1.0,
                 focal: float | None = None, device: str | None = None,
                 progress: Progress | None = None,
                 subject: dict[str, np.ndarray] | None = None
                 ) -> tuple[ClipResults, FitResult]:
    """A clip's detections -> the tracker -> elbow-twist fix and smoothing -> results.
    ``subject``: per-subject parameters to hold fixed (see ``TrackerConfig.subject``).

    ``backend fit`` and the server's tracker estimator both end here, so a clip sent over the
    network gives what fitting its file gives.
    """
    keypoints = Keypoints(detections.parts, detections.width, detections.height, fps=fps)
    config = TrackerConfig(focal=focal, device=device, subject=subject)
    config.smoothness *= smooth
    fit = Tracker(BodyModel(asset), config).fit(keypoints, progress=progress)
    model = BodyModel(asset)
    with torch.no_grad():
        rest_joints = model(betas=torch.as_tensor(fit.params["betas"])).rest_joints[0].numpy()
    params, cam_t = postprocess(fit.params, fit.cam_t, model.spec, rest_joints, model.joint_names,
                                strength=smooth)
    results = ClipResults(
        asset_id=asset.asset_id, spec_hash=asset.spec_hash, frames=detections.frames,
        times=detections.times, params=params, cam_t=cam_t, focal=fit.focal,
        center=fit.center, width=detections.width, height=detections.height,
        detections={**detections.parts, "boxes": detections.boxes},
        info={"fps": fps, "detection_rates": detections.rates(),
              "holistic_only_rates": detections.first_pass_rates,
              "reprojection_px": fit.reprojection_px, "fit_s": round(fit.seconds, 2),
              "smooth": smooth},
    )
    return results, fit


def fit_footage(footage: str | Path, out: str | Path | None,
                asset_id: str = registry.DEFAULT_ASSET_ID,
                smooth: float = 1.0, on_error: OnError = "skip", focal: float | None = None,
                max_frames: int | None = None, overlay: str | Path | None = None,
                progress: bool = True, person: int | None = None) -> ClipResults:
    """Footage -> detections -> tracker -> results (saved to ``out`` unless None), with a
    summary on stdout. ``person``: which person to follow (``ClipDetector``)."""
    start = time.perf_counter()
    source = open_footage(footage, on_error=on_error)
    total = min(source.frame_count, max_frames or source.frame_count)
    asset = registry.load(asset_id, progress=lambda m: print(m, file=sys.stderr))

    def limited():
        for frame in source:
            if frame.index >= total:
                return
            yield frame

    detect_start = time.perf_counter()
    detections = detect_clip(limited(), source.width, source.height,
                             progress=(lambda n: _bar("detecting (MediaPipe)", n, total))
                             if progress else None, person=person)
    detect_s = time.perf_counter() - detect_start
    results, fit = recover_clip(
        detections, source.fps, asset, smooth=smooth, focal=focal,
        progress=(lambda label, step, steps: _bar(f"fitting: {label}", step, steps))
        if progress else None)
    rates = results.info["detection_rates"]
    results.info.update({"footage": str(Path(footage).resolve()),
                         "footage_frames": source.frame_count,
                         "decode_failures": source.failures, "detect_s": round(detect_s, 2),
                         "person": person})
    if out is not None:
        save_results(results, out)
    elapsed = time.perf_counter() - start
    frames = len(detections.frames)
    print(f"{frames} frames ({source.width}x{source.height}, {source.fps:.1f} fps) in "
          f"{elapsed:.1f} s = {elapsed / frames:.3f} s/frame (detection {detect_s / frames:.3f}, "
          f"fitting {fit.seconds / frames:.3f})")
    print("found: " + ", ".join(f"{part} {100 * rate:.1f}%" for part, rate in rates.items()))
    if detections.first_pass_rates:
        print("  (Holistic alone: " + ", ".join(
            f"{part} {100 * rate:.1f}%" for part, rate in detections.first_pass_rates.items())
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


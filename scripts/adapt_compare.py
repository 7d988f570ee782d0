#!/usr/bin/env python3
"""Base vs base+adapters vs full fine-tuning on footage split by time (issue #19's measure).

    python scripts/adapt_compare.py --base CKPT --out DIR [--clip CLIP ...]
        [--synthetic FRAMES --mocap DIR] [--steps N] [--batch-size B]

For every clip, ``pear-train adapt``'s code runs twice with the same settings and the same
pseudo-labels (the tracker's, made once): adapters only, then the whole network (``--full``).
Each run holds out the clip's last frames and reports the held-out 2D body keypoint error
(pixels of the 256-pixel crop, against the tracker's labels) before and after.

``--synthetic FRAMES`` also renders a synthetic actor (the open asset's painted look, one body
shape, a held-out CMU performance from ``--mocap``, exact truth) to DIR/synthetic_actor.mp4
and adapts to it the same way; there the held-out frames are also scored against the truth:
body PA-MPJPE (mm) of base, base+adapters and the fully fine-tuned network.

Prints one JSON object and writes it to DIR/compare.json.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch

from backend.body import registry
from backend.body.model import BodyModel
from backend.mocap.poses import held_out_motion
from backend.perception.holistic import person_box
from backend.pipeline.demo import write_movie
from backend.pipeline.recovery import FrameRegressions, load_regressor
from backend.tracking.metrics import body_pa_mm
from backend.tracking.render_clip import render_frames
from backend.tracking.synthetic import SyntheticClip, make_clip
from backend.tracking.tracker import PART_LANDMARKS
from training.adapt import LABELS, AdaptSettings, adapt


def render_actor(asset, frames: int, mocap: Path, path: Path) -> SyntheticClip:
    """A synthetic actor performing a held-out CMU clip, written to ``path`` (mp4)."""
    model = BodyModel(asset).double()
    motion, described = held_out_motion(model, mocap, frames)
    clip = make_clip(BodyModel(asset), frames=min(frames, len(motion["body_pose"])), seed=3,
                     motion=motion)
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    size = (clip.keypoints.width, clip.keypoints.height)
    write_movie(render_frames(model, clip.params, clip.cam_t, clip.focal, size, colors), path,
                clip.keypoints.fps)
    print(f"rendered the synthetic actor ({described}, {len(clip.joints)} frames) -> {path}",
          flush=True)
    return clip


def held_out_pa_mpjpe(asset, clip: SyntheticClip, path: Path, regressor, held_out: float
                      ) -> float:
    """The regressor's body PA-MPJPE (mm) over the clip's last ``held_out`` frames."""
    from backend.perception.frames import open_footage

    frames = len(clip.joints)
    first = frames - max(1, math.ceil(held_out * frames))
    size = (clip.keypoints.width, clip.keypoints.height)
    regressions = FrameRegressions(regressor, clip.focal, (size[0] / 2, size[1] / 2))
    parts = [clip.keypoints.parts[part] for part in PART_LANDMARKS]
    for t, frame in enumerate(open_footage(path)):
        if t >= first:
            regressions.add(t - first, frame.image,
                            person_box(*[points[t] for points in parts]))
    estimate = regressions.finish(frames - first)
    return body_pa_mm(BodyModel(asset).double(),
                      {k: v for k, v in estimate.items() if k != "cam_t"}, clip.joints[first:])


def compare_clip(base: Path, clip_path: Path, out: Path, asset, settings: AdaptSettings,
                 truth: SyntheticClip | None) -> dict:
    """Adapters, then the full network, on one clip; the pseudo-labels are made once."""
    row: dict = {"clip": str(clip_path)}
    for kind in ("adapters", "full"):
        run = out / kind
        if kind == "full" and not (run / LABELS).exists():
            shutil.copytree(out / "adapters" / LABELS, run / LABELS)
        report = adapt(base, [clip_path], run, asset,
                       AdaptSettings(**{**settings.__dict__, "full": kind == "full"}))
        row.setdefault("train_frames", report.train_samples)
        row.setdefault("held_out_frames", report.held_out_samples)
        row.setdefault("base_kp2d_px", round(report.before["kp2d_px"], 2))
        row[f"{kind}_kp2d_px"] = round(report.after["kp2d_px"], 2)
        row[f"{kind}_trained_parameters"] = report.trained_parameters
        row[f"{kind}_best_step"] = report.best_step
        row[f"{kind}_seconds"] = round(report.seconds, 1)
        if truth is not None:
            regressor = (load_regressor(asset, base, adapter=run / "adapter") if kind == "adapters"
                         else load_regressor(asset, run / "checkpoint"))
            row[f"{kind}_pa_mpjpe_mm"] = held_out_pa_mpjpe(asset, truth, clip_path, regressor,
                                                           settings.held_out)
    row["base_parameters"] = report.base_parameters
    if truth is not None:
        row["base_pa_mpjpe_mm"] = held_out_pa_mpjpe(asset, truth, clip_path,
                                                    load_regressor(asset, base),
                                                    settings.held_out)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the regressor checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clip", type=Path, nargs="*", default=[])
    parser.add_argument("--synthetic", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--mocap", type=Path, default=Path("../shared/data/mocap/cmu"))
    parser.add_argument("--asset", default="open")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    asset = registry.load(args.asset)
    # The same number of steps for both: no early stop, a validation every fifth of the run.
    settings = AdaptSettings(steps=args.steps, batch_size=args.batch_size,
                             val_every=max(1, args.steps // 5), patience=args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    clips: list[tuple[Path, SyntheticClip | None]] = [(clip, None) for clip in args.clip]
    if args.synthetic:
        actor = args.out / "synthetic_actor.mp4"
        clips.append((actor, render_actor(asset, args.synthetic, args.mocap, actor)))
    rows = []
    for clip_path, truth in clips:
        rows.append(compare_clip(args.base, clip_path, args.out / clip_path.stem, asset,
                                 settings, truth))
        print(json.dumps(rows[-1]), flush=True)
    summary = {"steps": args.steps, "batch_size": args.batch_size, "clips": rows,
               "threads": torch.get_num_threads()}
    (args.out / "compare.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""The ``pear-train`` command: PEAR's training stages, one subcommand each.

Torch is imported only by the subcommand that runs, so ``pear-train --help`` answers at once.
Errors the user can fix print one ``error: ...`` line and exit with their kind's code
(``backend.errors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.cli import run
from backend.conventions import DEFAULT_ASSET_ID

from .config import CONFIG_DIR, as_json, load_config

OVERLAY_SAMPLES = 16  # eval --overlay draws this many samples (fewer with --limit)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"a TOML or YAML file (shipped: {CONFIG_DIR})")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one field, e.g. --set optim.lr=1e-4 (repeatable)")


def _add_run_command(commands, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    """A training command: a config file, --set overrides, --resume."""
    parser = commands.add_parser(name, help=help_text)
    _add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in run.out")
    parser.set_defaults(handler=handler)
    return parser


def _config(args: argparse.Namespace) -> int:
    print(as_json(load_config(args.config, args.set)))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def _synth(args: argparse.Namespace) -> int:
    import time
    from functools import partial

    from backend.body.model import BodyModel
    from backend.body.registry import load
    from backend.mocap.poses import pose_source
    from backend.status_line import StatusLine

    from .data.pairs import PairGenerator
    from .data.shards import Manifest, write_shards
    from .data.synth import GENERATOR_VERSION, SynthGenerator

    asset = load(args.asset)
    poses = pose_source(BodyModel(asset).double(), args.mocap, args.split)
    described = f"mocap:{Path(args.mocap).resolve()}" if args.mocap else poses.kind
    # Pairs are two records each, a pair never split over shards.
    records, shard_size = (2 * args.count, 2 * args.shard_size) if args.pairs else (
        args.count, args.shard_size)
    manifest = Manifest(asset.asset_id, asset.spec_hash, args.seed, args.split, records,
                        shard_size, described, GENERATOR_VERSION, args.facing, args.pairs)
    started = time.perf_counter()
    status = StatusLine()

    def progress(done: int, todo: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        status.show(f"synth: {done}/{todo} samples, {rate:.2f}/s", final=done >= todo)

    generator = PairGenerator if args.pairs else SynthGenerator
    rendered = write_shards(args.out, manifest, partial(generator, asset, poses, args.seed,
                                                        args.split, args.facing),
                            args.workers, progress)
    elapsed = time.perf_counter() - started
    kept = f", {records - rendered} kept from an earlier run" if rendered < records else ""
    unit = "records" if args.pairs else "samples"
    per_pair = " (2 per pair)" if args.pairs else ""
    print(f"{rendered} {unit}{per_pair} rendered in {elapsed:.1f} s: {rendered / elapsed:.2f} "
          f"{unit}/s "
          f"with {args.workers} worker(s){kept}; {args.split} split, seed {args.seed}, poses "
          f"from {described} -> {args.out}")
    return 0


def _stage1(args: argparse.Namespace) -> int:
    from .stage1 import run_stage1

    config = load_config(args.config, args.set)
    summary = run_stage1(config, resume=args.resume, install=args.install)
    state = "stopped by a signal" if summary.stopped_early else "done"
    print(f"{state} at step {summary.steps}; loss {summary.last_loss:.4f}; "
          f"{summary.images / summary.seconds:.2f} img/s on this process; trainer overhead "
          f"{100 * summary.overhead_fraction:.1f}%; checkpoint {summary.checkpoint}")
    if args.install:
        print(f"installed for body model {config.data.asset!r}: `backend fit --estimator "
              "regressor` now uses it")
    return 0


def _renderer(args: argparse.Namespace) -> int:
    from .avatar.config import RendererTrainConfig
    from .avatar.train import run_renderer

    _say_pairs_run(run_renderer(load_config(args.config, args.set, RendererTrainConfig),
                                resume=args.resume))
    return 0


def _say_pairs_run(summary, about_checkpoint: str = "") -> None:
    """The last line of a run trained on pairs (the renderer, stage 2)."""
    state = "stopped by a signal" if summary.stopped_early else "done"
    print(f"{state} at step {summary.steps}; loss {summary.last_loss:.4f}; "
          f"{summary.images / summary.seconds:.2f} pairs/s on this process; checkpoint "
          f"{summary.checkpoint}{about_checkpoint}")


def _stage2(args: argparse.Namespace) -> int:
    from .avatar.stage2 import run_stage2
    from .avatar.stage2_config import Stage2Config

    _say_pairs_run(run_stage2(load_config(args.config, args.set, Stage2Config),
                              resume=args.resume),
                   " (the regressor; the renderer in its renderer/ folder)")
    return 0


def _renderer_eval(args: argparse.Namespace) -> int:
    import json

    from backend.avatar.checkpoint import load_avatar
    from backend.body import registry

    from .avatar.evaluate import contact_sheet, evaluate_renderer
    from .data.pairs import ShardPairs

    asset = registry.load(args.asset)
    avatar = load_avatar(args.checkpoint, asset)
    sheet: list | None = [] if args.sheet else None
    pairs = ShardPairs(args.data)
    result = evaluate_renderer(avatar, asset, pairs, args.limit, sheet=sheet)
    if args.coupling:
        from backend.body.model import BodyModel

        from .avatar.batch import collate_pairs
        from .avatar.coupling import pose_descent

        batch = collate_pairs([pairs[i] for i in range(min(args.coupling, len(pairs)))])
        body = BodyModel(asset)
        for through in ("raw", "refined"):
            found = pose_descent(avatar, body, batch, through=through)
            result[f"coupling_{through}"] = {"start_mm": round(found.start_mm, 2),
                                             "end_mm": round(found.end_mm, 2),
                                             "pairs": found.pairs}
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    if args.sheet:
        from PIL import Image

        Image.fromarray(contact_sheet(sheet)).save(args.sheet)
        print(f"wrote {args.sheet} (source | truth | avatar | projected colours)",
              file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from backend.body import registry
    from backend.regressor.checkpoint import load_checkpoint

    from .data.augment import AugmentConfig, Augmenter
    from .data.sources import open_sources, smpl_pose_offset
    from .evaluate import compare

    asset = registry.load(args.asset)
    network = load_checkpoint(args.checkpoint, asset)
    source = open_sources(args.data, {}, asset,
                          smpl_offset=smpl_pose_offset(args.smpl_model, asset))
    prepare = Augmenter(asset, AugmentConfig.off())
    result = compare(network, asset, source, prepare, limit=args.limit)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    if args.overlay:
        from .overlays import write_overlays

        count = min(OVERLAY_SAMPLES, args.limit or OVERLAY_SAMPLES)
        written = write_overlays(network, asset, source, args.overlay, prepare, count)
        print(f"wrote {len(written)} overlays (network | baseline) to {args.overlay}",
              file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .plot import plot_run

    print(f"wrote {plot_run(args.run, args.out)}")
    return 0


def _pseudo_label(args: argparse.Namespace) -> int:
    from backend.body import registry

    from .pseudo_label import DEFAULT_MAX_ERROR, REPORT, pseudo_label

    max_error = DEFAULT_MAX_ERROR if args.max_error is None else args.max_error
    reports = pseudo_label(args.footage, args.out, registry.load(args.asset), max_error,
                           args.shard_size)
    for report in reports:
        untrusted = ", ".join(f"{part} {count}" for part, count in report.parts_untrusted.items()
                              if count)
        print(f"{report.footage}: kept {report.kept} of {report.frames} frames ("
              f"{report.no_person} without a detected body, {report.over_error} with the "
              f"body's error above {max_error})"
              + (f"; parts not trusted in kept frames: {untrusted}" if untrusted else ""))
    print(f"wrote {sum(r.kept for r in reports)} samples -> {args.out} (counts in "
          f"{Path(args.out) / REPORT})")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    import time

    from backend.body import registry
    from backend.status_line import StatusLine

    from .adapt import AdaptSettings, adapt

    status, started = StatusLine(), time.perf_counter()

    def progress(step: int, steps: int, loss: float) -> None:
        left = (time.perf_counter() - started) / step * (steps - step)
        status.show(f"adapt: step {step}/{steps}  loss {loss:.4f}  ETA {left:.0f} s",
                    final=step >= steps)

    settings = AdaptSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             held_out=args.held_out, val_every=args.val_every,
                             patience=args.patience, full=args.full)
    report = adapt(args.base, args.footage, args.out, registry.load(args.asset), settings,
                   resume=args.resume, say=status.note, progress=progress)
    print("\n".join(report.lines()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from backend.body import registry

    from .bench import run_bench

    result = run_bench(registry.load(args.asset),
                       lambda stage: print(f"bench: {stage} ...", file=sys.stderr, flush=True))
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pear-train",
        description="Train the PEAR regressor: data engine, stage 1 (parameters and "
                    "keypoints), evaluation. docs/training.md has the recipe.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="print a configuration as a run would use it "
                                 "(defaults, then the file, then the --set overrides)")
    _add_config_arguments(config)
    config.set_defaults(handler=_config)

    synth = commands.add_parser(
        "synth", help="render synthetic stage-1 samples with exact labels (RGBA crops, every "
        "parameter, joints, keypoints with visibility) into WebDataset shards; a rerun resumes")
    synth.add_argument("--asset", default=DEFAULT_ASSET_ID,
                       help="body model (default: %(default)s)")
    synth.add_argument("--count", type=_positive, required=True, help="how many samples")
    synth.add_argument("--out", required=True, help="the shard folder (made if missing)")
    synth.add_argument("--split", choices=("train", "val"), default="train",
                       help="val: poses of the held-out mocap subjects, its own random streams")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=_positive, default=1, help="processes (one per core)")
    synth.add_argument("--mocap", metavar="DIR",
                       help="a folder of BVH clips for the poses (default: per-joint ranges)")
    synth.add_argument("--facing", type=float, default=180.0, metavar="DEGREES",
                       help="how far a body may turn away from facing the camera, either way "
                            "(default 180: any way; e.g. 60 for front views only)")
    synth.add_argument("--shard-size", type=_positive, default=500, help="samples per shard")
    synth.add_argument("--pairs", action="store_true",
                       help="avatar training pairs: --count people, each rendered twice (two "
                            "poses, expressions and shots; the first facing the camera more)")
    synth.set_defaults(handler=_synth)

    stage1 = _add_run_command(commands, "stage1", _stage1,
                              "train the regressor on parameters and keypoints (PEAR Eq. 1-3); "
                              "under torchrun for many GPUs")
    stage1.add_argument("--install", action="store_true",
                        help="then put the weights where `backend fit --estimator regressor` "
                        "looks ($PEAR_HOME/checkpoints/<asset>)")

    _add_run_command(commands, "renderer", _renderer,
                     "train the Gaussian avatar renderer on pairs from `synth --pairs` "
                     "(GUAVA's losses; SSIM stands in for LPIPS without local weights); under "
                     "torchrun for many GPUs")
    _add_run_command(commands, "stage2", _stage2,
                     "train the regressor and the renderer together on pairs (PEAR Eq. 5-7: the "
                     "target rendered from the source's avatar, L1 + perceptual, stage 1's "
                     "losses kept); starts from joint.stage1_checkpoint and "
                     "joint.renderer_checkpoint")

    renderer_eval = commands.add_parser(
        "renderer-eval", help="a renderer checkpoint's self-reenactment on held-out pairs "
        "(PSNR, SSIM) beside the projected-colours and mean-image baselines (JSON)")
    renderer_eval.add_argument("--checkpoint", type=Path, required=True,
                               help="a renderer checkpoint folder (RUN/checkpoint)")
    renderer_eval.add_argument("--data", nargs="+", required=True,
                               help="pair folders made by `pear-train synth --pairs`")
    renderer_eval.add_argument("--asset", default=DEFAULT_ASSET_ID,
                               help=f"body model (default: {DEFAULT_ASSET_ID})")
    renderer_eval.add_argument("--limit", type=_positive, default=64,
                               help="the first N pairs (default: %(default)s)")
    renderer_eval.add_argument("--coupling", type=_positive, metavar="N",
                               help="also the coupling stage 2 needs, on the first N pairs: "
                               "their target poses made noisy, then pulled back by gradient "
                               "descent through the rendering (mean joint error, mm, before "
                               "and after; through the splatted and the refined image)")
    renderer_eval.add_argument("--json", action="store_true", help="one JSON line")
    renderer_eval.add_argument("--sheet", type=Path, metavar="PNG",
                               help="also write a contact sheet of the first 8 pairs")
    renderer_eval.set_defaults(handler=_renderer_eval)

    evaluation = commands.add_parser("eval", help="a checkpoint's accuracy on labelled "
                                     "samples, beside the mean-parameter baseline (JSON)")
    evaluation.add_argument("--checkpoint", type=Path, required=True,
                            help="a checkpoint folder (a run's RUN/checkpoint, or installed)")
    evaluation.add_argument("--data", nargs="+", required=True,
                            help="shard folders made by `pear-train synth`, or datasets as "
                            "KIND:PATH[:IMAGES] (coco-wholebody, mmhuman3d, smplx-params)")
    evaluation.add_argument("--smpl-model", default="",
                            help="your SMPL .npz: with an SMPL-X --asset, mmhuman3d's SMPL "
                            "poses are scored too (Eq. 4)")
    evaluation.add_argument("--asset", default=DEFAULT_ASSET_ID,
                            help=f"body model (default: {DEFAULT_ASSET_ID})")
    evaluation.add_argument("--limit", type=_positive, help="only the first N samples")
    evaluation.add_argument("--json", action="store_true", help="one JSON line")
    evaluation.add_argument("--overlay", type=Path, metavar="DIR",
                            help=f"also draw the first {OVERLAY_SAMPLES} samples' meshes "
                            "(network | baseline) over their crops, one PNG each")
    evaluation.set_defaults(handler=_eval)

    plot = commands.add_parser("plot", help="a run's loss curves (each term, log scale) and "
                               "validation metrics from RUN/log.csv, as a PNG")
    plot.add_argument("run", type=Path, metavar="RUN_DIR", help="a run folder (run.out)")
    plot.add_argument("--out", type=Path, metavar="PNG", help="default: RUN_DIR/curves.png")
    plot.set_defaults(handler=_plot)

    pseudo = commands.add_parser(
        "pseudo-label", help="footage -> the tracker's fit -> training samples (crops, "
        "parameters, keypoints with per-part confidences) in the synth shard format")
    pseudo.add_argument("footage", nargs="+", metavar="FOOTAGE",
                        help="videos, image folders or images, one person each")
    pseudo.add_argument("--out", required=True, help="the shard folder (made if missing)")
    pseudo.add_argument("--asset", default=DEFAULT_ASSET_ID,
                        help="body model (default: %(default)s)")
    pseudo.add_argument("--max-error", type=float, metavar="CROP_HEIGHTS",
                        help="drop frames whose body reprojection error is above this, in "
                        "crop heights (default: training.pseudo_label.DEFAULT_MAX_ERROR, 0.03: "
                        "~8 px of the 256-pixel crop)")
    pseudo.add_argument("--shard-size", type=_positive, default=500, help="samples per shard")
    pseudo.set_defaults(handler=_pseudo_label)

    adapting = commands.add_parser(
        "adapt", help="fine-tune on your actor: adapters beside a frozen base checkpoint, "
        "trained on the footage's pseudo-labels, the last frames held out")
    adapting.add_argument("--base", type=Path, required=True, metavar="CKPT",
                          help="the regressor checkpoint to adapt (left untouched)")
    adapting.add_argument("--footage", type=Path, nargs="+", required=True, metavar="CLIP",
                          help="videos, image folders or images of the actor, one person each")
    adapting.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="the run folder: labels/, adapter/ (or checkpoint/ with "
                          "--full), adapt.json")
    adapting.add_argument("--asset", default=DEFAULT_ASSET_ID,
                          help="body model (default: %(default)s)")
    adapting.add_argument("--steps", type=_positive, default=300, help="at most (default 300)")
    adapting.add_argument("--batch-size", type=_positive, default=8)
    adapting.add_argument("--lr", type=float, help="default 1e-3 for the adapters, 5e-5 "
                          "with --full (training.adapt's ADAPTER_LR, FULL_LR)")
    adapting.add_argument("--held-out", type=float, default=0.2,
                          help="the share of each clip's frames, its last, held out")
    adapting.add_argument("--val-every", type=_positive, default=25, metavar="STEPS")
    adapting.add_argument("--patience", type=_positive, default=3, help="validations without "
                          "a better held-out error before stopping")
    adapting.add_argument("--full", action="store_true", help="fine-tune the whole network "
                          "instead (the comparison)")
    adapting.add_argument("--resume", action="store_true", help="go on from DIR/state.pt")
    adapting.set_defaults(handler=_adapt)

    bench = commands.add_parser(
        "bench", help="throughput of each stage on this machine: synthetic renders, the "
        "loader, the training step (ViT-S, ViT-B), 2 processes over 1, trainer overhead")
    bench.add_argument("--asset", default=DEFAULT_ASSET_ID,
                       help="body model (default: %(default)s)")
    bench.add_argument("--json", action="store_true", help="one JSON line")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

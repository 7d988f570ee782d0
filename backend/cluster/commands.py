"""``backend bake --ray`` and ``backend fit --ray``: the command line's side of ``ray_run``
(imported by ``backend --help``: the cluster's modules load only when ``--ray`` runs)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EXIT_BATCH_PARTLY_FAILED, InputError
from ..status_line import StatusLine

if TYPE_CHECKING:
    from .work import ClipJob, Settings

EXIT_CANCELLED = 130  # as a shell reports a Ctrl-C

_STATUS = StatusLine()


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (docs/cluster.md; needs the [cluster] extra)")
    group.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run on Ray: alone, a local Ray on this machine's cores; 'auto' or "
                       "HOST:PORT: the cluster this machine is a node of (footage and --out "
                       "on a path every node sees; ray://HOST:PORT: through Ray Client)")
    group.add_argument("--workers", type=int, help="with --ray: how many workers (default: one "
                       "per CPU, or per GPU when the regressor runs)")
    group.add_argument("--part-frames", type=int, default=300, metavar="N",
                       help="with --ray: clips longer than N frames are split into parts fitted "
                       "on several workers and joined (0: never split; default 300)")


def settings_from(args: argparse.Namespace, formats: tuple[str, ...] = ()) -> Settings:
    from .work import Settings

    retarget = getattr(args, "retarget", None)
    person = getattr(args, "people", None) or args.person
    return Settings(
        asset=args.asset, estimator=args.estimator,
        checkpoint=str(args.checkpoint.resolve()) if args.checkpoint else None,
        adapter=str(args.adapter.resolve()) if args.adapter else None,
        smooth=args.smooth, focal=args.focal, max_frames=args.max_frames,
        contact=not args.no_contact, face_scores=not args.no_face_scores, person=person,
        formats=formats,
        background=not getattr(args, "no_background", False),
        overlay=getattr(args, "overlay", None) is True,  # `fit --overlay` names a file
        body_shape_keys=getattr(args, "body_shape_keys", False),
        retarget=(retarget, str(args.target_rig.resolve()), args.target_armature)
        if retarget else None,
        part_frames=args.part_frames, overlap=8)


def bake_on_ray(args: argparse.Namespace, formats: tuple[str, ...]) -> int:
    from .work import ClipJob

    out = args.out.resolve()
    jobs = [ClipJob(footage.resolve(), out) for footage in args.footage]
    return _run(jobs, settings_from(args, formats), args, args.report or out / "report.json")


def fit_on_ray(args: argparse.Namespace) -> int:
    if args.overlay:
        raise InputError("`backend fit --ray` writes the result file only: draw the overlay "
                         "from it with `backend bake --ray --overlay`, or fit without --ray")
    from .work import ClipJob

    output = args.output.resolve()
    job = ClipJob(args.footage.resolve(), output.parent, mode="fit", output=output)
    return _run([job], settings_from(args), args, output.with_suffix(".report.json"))


def _run(jobs: list[ClipJob], settings: Settings, args: argparse.Namespace,
         report: Path) -> int:
    from .ray_run import run_jobs
    from .report import summary_table, write_report

    address = None if args.ray == "local" else args.ray
    start = time.perf_counter()
    try:
        outcomes = run_jobs(jobs, settings, address, force=getattr(args, "force", False),
                            workers=args.workers, progress=_show_progress)
    except KeyboardInterrupt:
        print("\ncancelled: clips already finished are kept whole; nothing half-written is "
              "left (run the same command again to do the rest)", file=sys.stderr)
        return EXIT_CANCELLED
    print(summary_table(outcomes))
    path = write_report(outcomes, report, time.perf_counter() - start, asdict(settings))
    print(f"report: {path}")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{len(failed)} of {len(outcomes)} clip(s) failed", file=sys.stderr)
        return EXIT_BATCH_PARTLY_FAILED
    return 0


def _show_progress(clips_done: int, clips: int, frames_done: int, frames: int) -> None:
    width = 30
    filled = int(width * frames_done / max(frames, 1))
    _STATUS.show(f"clips {clips_done}/{clips}  frames [{'#' * filled}{'.' * (width - filled)}] "
                 f"{frames_done}/{frames or '?'}", topic="cluster",
                 final=clips_done >= clips)

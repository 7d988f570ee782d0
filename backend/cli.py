"""The ``backend`` command: ``backend models ...``, ``backend bench ...``, ``backend demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from .cluster.commands import add_cluster_arguments
from .conventions import DEFAULT_ASSET_ID, MAX_PEOPLE
from .errors import (
    EXIT_BATCH_PARTLY_FAILED,
    EXIT_BUG,
    ClipError,
    InputError,
    PearError,
    describe,
    describe_bug,
    exit_code,
)
from .estimator_names import ESTIMATORS, uses_regressor
from .paths import route_caches
from .server.config import ServerConfig
from .status_line import StatusLine

TRACKER_BENCH_FRAMES = 300

ESTIMATOR_HELP = ("tracker (default: MediaPipe + optimization, no checkpoint needed), regressor "
                  "(the PEAR network per frame) or regressor+tracker (the network's estimate "
                  "refined by a short tracker run); the regressor ones need a trained checkpoint")
CHECKPOINT_HELP = ("the regressor checkpoint folder (weights.safetensors + config.json); "
                   "default: $PEAR_HOME/checkpoints/<asset>")
ADAPTER_HELP = ("an adapter folder made by `pear-train adapt` on the checkpoint: the regressor "
                "fine-tuned on your actor (the regressor estimators only)")
FACE_SCORES_HELP = ("do not take MediaPipe's facial blendshape scores as evidence for the "
                    "expressions: the face's landmarks alone (~10 ms a frame faster)")
PERSON_HELP = ("follow this person when several are in view: 1 = the leftmost in the first frame "
               "showing anybody (`backend people FOOTAGE` numbers them); default: the most "
               "prominent one")


def _person_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PEOPLE:
        raise argparse.ArgumentTypeError(f"a person number from 1 (the leftmost) to {MAX_PEOPLE}"
                                         f", not {text!r}")
    return int(text)


def _models_install(args: argparse.Namespace) -> int:
    from .body import registry
    from .body.build.landmark_transfer import add_missing_sets
    from .body.build.smplx_asset import build_smplx_asset

    asset = build_smplx_asset(
        args.smplx, flame_path=args.flame, correspondence_path=args.correspondence,
        eyelids_path=args.eyelids, num_betas=args.num_betas, num_head_shape=args.num_head_shape,
        num_expression=args.num_expression, asset_id=args.id,
    )
    # The tracker fits MediaPipe points: carry the free default model's sets over.
    asset, report = add_missing_sets(asset, registry.load(registry.DEFAULT_ASSET_ID))
    for name, snap in report.items():
        print(f"landmarks {name}: carried from {registry.DEFAULT_ASSET_ID!r}, snapped onto the "
              f"surface by {snap['snap_mean_mm']:.1f} mm on average "
              f"({snap['snap_max_mm']:.1f} mm at most)")
    path = registry.install(asset)
    summary = asset.summary()
    print(f"installed {summary['asset_id']} ({summary['kind']}): {summary['vertices']} vertices, "
          f"{summary['joints']} joints -> {path}")
    return 0


def _priors_train(args: argparse.Namespace) -> int:
    from .body.model import BodyModel
    from .paths import priors_dir
    from .priors.train import train_pose_prior

    asset = _load_asset(args.asset)
    prior = train_pose_prior(BodyModel(asset).double(), args.mocap, seed=args.seed)
    out = args.out or priors_dir() / f"pose_prior_{asset.asset_id}.npz"
    prior.save(out)
    print(json.dumps(prior.info, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB); the tracker now uses it for "
          f"body model {asset.asset_id!r}")
    return 0


def _priors_show(args: argparse.Namespace) -> int:
    from .priors.pose_prior import prior_path, read_pose_prior

    path = prior_path(args.asset)
    if path is None:
        print(f"no pose prior for body model {args.asset!r}: the tracker fits without one. "
              f"Train one with `backend priors train --asset {args.asset} --mocap DIR`")
        return 0
    prior = read_pose_prior(path)
    print(json.dumps({"file": str(path), "asset_id": prior.asset_id, **prior.info}, indent=1))
    return 0


def _models_build_open(args: argparse.Namespace) -> int:
    from .body import registry
    from .body.build.open_asset import OpenBuildConfig, build_open_asset

    config = OpenBuildConfig(num_components=args.components, num_samples=args.samples,
                             quick_landmarks=args.quick)
    build = build_open_asset(config, progress=lambda message: print(f"... {message}",
                                                                      flush=True))
    path = registry.install(build.asset)
    summary, report = build.asset.summary(), build.report
    print(f"built {summary['asset_id']}: {summary['vertices']} vertices, {summary['joints']} "
          f"joints, {summary['params']['betas']} shape components "
          f"({100 * report['explained_variance_total']:.4f}% of anny's phenotype variance, "
          f"held-out error {report['heldout_mean_mm']} mm mean), "
          f"{summary['params']['expression']} ARKit expressions, "
          f"{sum(summary['landmark_sets'].values())} MediaPipe landmarks (face spread "
          f"{report.get('face_spread_mean_mm', 'n/a')} mm mean), in {report['build_s']} s -> "
          f"{path}")
    return 0


def _models_preview(args: argparse.Namespace) -> int:
    from .body import registry
    from .pipeline.preview import render_preview

    path = render_preview(registry.load(args.asset), args.out)
    print(f"wrote {path}")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from .body import registry

    rows = registry.summaries()
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no body-model assets installed (see `backend models install --help`)")
    for row in rows:
        if "error" in row:
            print(f"{row['asset_id']}: UNREADABLE: {row['error']}")
            continue
        sizes = ", ".join(f"{k} {v}" for k, v in row["params"].items())
        print(f"{row['asset_id']} [{row['kind']}] {row['vertices']} vertices, {row['joints']} "
              f"joints\n  params: {sizes}\n  license: {row['license']}")
    return 0


# The benches that time something several times and take the median.
_REPEATED_BENCHES = {"ehm", "open-model", "regressor", "renderer", "server", "tracker"}


def _bench(args: argparse.Namespace) -> int:
    if args.target == "ehm":
        from .bench.ehm import run_ehm_bench as run
    elif args.target == "open-model":
        from .bench.open_model import run_open_model_bench as run
    elif args.target == "blender":
        from .bench.blender import run_blender_bench as run
    elif args.target == "server":
        from .bench.server import run_server_bench as run
    elif args.target == "regressor":
        from .bench.regressor import run_regressor_bench as run
    elif args.target == "renderer":
        from .bench.renderer import run_renderer_bench as run
    elif args.target == "cluster":
        from .bench.cluster import run_cluster_bench as run
    elif args.target == "live":
        from .bench.live import run_live_bench as run
    else:
        from .bench.tracker import run_tracker_bench as run

    if args.repeats is not None and args.target not in _REPEATED_BENCHES:
        raise InputError(f"`backend bench {args.target}` runs once; --repeats is an option of "
                         f"{', '.join(sorted(_REPEATED_BENCHES))}")
    options = {} if args.repeats is None else {"repeats": args.repeats}
    if args.target == "tracker":
        options.update(frames=args.frames or TRACKER_BENCH_FRAMES, checkpoint=args.checkpoint,
                       mocap=args.mocap)
    elif args.target == "live":
        if args.checkpoint is not None:
            raise InputError("`backend bench live` takes --frames and --mocap only")
        options.update(mocap=args.mocap, **({"frames": args.frames} if args.frames else {}))
    elif (args.checkpoint, args.mocap, args.frames) != (None, None, None):
        raise InputError("--checkpoint, --mocap and --frames are options of `backend bench "
                         "tracker` (and the last two of `backend bench live`)")
    result = run(progress=not args.json, **options)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


_STATUS = StatusLine()


def _progress_bar(label: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""
    width = 30
    filled = int(width * done / max(total, 1))
    _STATUS.show(f"{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
                 topic=label, final=done >= total)


def _load_asset(asset_id: str):
    """An installed body model; building the default one on first use says so on stderr."""
    from .body import registry

    return registry.load(asset_id, progress=lambda message: print(message, file=sys.stderr))


def _check_adapter(args: argparse.Namespace) -> None:
    if args.adapter is not None and not uses_regressor(args.estimator):
        raise InputError("--adapter adapts the regressor: use it with --estimator regressor or "
                         "regressor+tracker (and the --checkpoint it was trained on)")


def _fit(args: argparse.Namespace) -> int:
    _check_adapter(args)
    if args.ray:
        from .cluster.commands import fit_on_ray

        return fit_on_ray(args)
    from .pipeline.fit import fit_footage

    fitted = fit_footage(args.footage, _load_asset(args.asset), args.output, smooth=args.smooth,
                         on_error=args.on_error, focal=args.focal, max_frames=args.max_frames,
                         overlay=args.overlay, person=args.person, estimator=args.estimator,
                         checkpoint=args.checkpoint, progress=_progress_bar,
                         contact=not args.no_contact, adapter=args.adapter,
                         face_scores=not args.no_face_scores)
    print("\n".join(fitted.summary()))
    return 0


def _live(args: argparse.Namespace) -> int:
    from .live.command import live_command

    _check_adapter(args)

    def regressor_for(args: argparse.Namespace, asset):
        if not uses_regressor(args.estimator):
            return None
        from .pipeline.recovery import load_regressor

        return load_regressor(asset, args.checkpoint, adapter=args.adapter)

    return live_command(args, _load_asset, regressor_for)


def _people(args: argparse.Namespace) -> int:
    import cv2

    from .pipeline.people_in_footage import draw_people, people_in_footage

    found = people_in_footage(args.footage, max_frames=args.max_frames)
    if not found.boxes:
        print(f"nobody found in the first {args.max_frames} frames of {args.footage}")
        return 1
    count = len(found.boxes)
    print(f"frame {found.frame} shows {count} {'person' if count == 1 else 'people'} "
          "(numbered from the left, as --person counts them):")
    for number, box in enumerate(found.boxes, start=1):
        print(f"  person {number}: box x {box[0]:.0f}-{box[2]:.0f}, y {box[1]:.0f}-{box[3]:.0f}")
    if args.out:
        cv2.imwrite(str(args.out), cv2.cvtColor(draw_people(found.image, found.boxes),
                                                cv2.COLOR_RGB2BGR))
        print(f"wrote {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .body import registry
    from .body.model import BodyModel
    from .evaluation.coco_wholebody import evaluate

    def say(done: int, total: int) -> None:
        if not args.json:
            print(f"... person {done}/{total}", flush=True)

    options = {} if args.crop_scale is None else {"crop_scales": tuple(args.crop_scale)}
    result = evaluate(args.data, BodyModel(registry.load(args.asset)), progress=say,
                      **options)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


def _avatar(args: argparse.Namespace) -> int:
    from .pipeline.avatar_video import avatar_video

    done = avatar_video(args.source, args.motion, args.out, _load_asset(args.asset),
                        args.checkpoint, args.side_by_side, _progress_bar)
    print(f"wrote {done['out']} ({done['frames']} frames)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .pipeline.demo import run_demo

    run_demo(Path(args.out), frames=args.frames)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server.serve import serve

    config = ServerConfig(bind=args.bind, keys=args.keys, window=args.window,
                          max_batch=args.max_batch, max_sessions=args.max_sessions,
                          session_timeout=args.session_timeout,
                          shutdown_grace=args.shutdown_grace)
    serve(config, gpu=args.gpu, estimators=args.estimator, checkpoint=args.checkpoint,
          adapter=args.adapter, compile_regressor=args.compile, renderer=args.renderer)
    return 0


def _bake(args: argparse.Namespace) -> int:
    from .pipeline.bake import RetargetTo, bake_clip, check_retarget

    _check_adapter(args)
    formats = tuple(f for f in ("fbx", "glb", "bvh", "npz") if getattr(args, f))
    if (args.retarget is None) != (args.target_rig is None):
        raise InputError("--retarget PRESET and --target-rig FILE go together: the preset maps "
                         "the PEAR joints onto that character's bones")
    retarget = (RetargetTo(args.retarget, args.target_rig, args.target_armature)
                if args.retarget else None)
    if retarget is not None:
        check_retarget(retarget)
    if args.ray:
        from .cluster.commands import bake_on_ray

        return bake_on_ray(args, formats)
    asset = _load_asset(args.asset)  # once for the whole batch
    failed = []
    for number, footage in enumerate(args.footage, start=1):
        print(f"[{number}/{len(args.footage)}] {footage}", flush=True)
        try:
            baked = bake_clip(footage, args.out, asset, estimator=args.estimator,
                              smooth=args.smooth, focal=args.focal, formats=formats,
                              background=not args.no_background, max_frames=args.max_frames,
                              overlay=args.overlay, body_shape_keys=args.body_shape_keys,
                              person=args.people or args.person, checkpoint=args.checkpoint,
                              progress=_progress_bar, contact=not args.no_contact,
                              retarget=retarget, adapter=args.adapter,
                              face_scores=not args.no_face_scores)
        except (ClipError, InputError) as exc:  # this clip only: go on (a SetupError stops)
            print(describe(exc, about=str(footage)), file=sys.stderr)
            failed.append(footage)
            continue
        print(f"baked {baked.frames} frames in {baked.seconds:.1f} s ({baked.fps:.2f} frames/s)")
        for kind, path in baked.files.items():
            print(f"  {kind}: {path}")
        for note in baked.notes:
            print(f"  note: {note}")
    if failed:
        print(f"{len(failed)} of {len(args.footage)} clip(s) failed: {[str(f) for f in failed]}",
              file=sys.stderr)
        return EXIT_BATCH_PARTLY_FAILED
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from .server.keys import generate

    made = generate(args.directory)
    print(f"server keys: {made['server']} (keep on the server; start it with "
          f"`backend serve --keys {args.directory}`)\n"
          f"client keys: {made['client']} (give this folder to a client: --keys / add-on "
          f"preferences)\nallowed clients: {made['authorized_clients']} (one .key per client)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backend",
        description="PEAR for Blender backend: body models, estimators, server, bake.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="install and list body-model assets")
    models_commands = models.add_subparsers(dest="models_command", required=True,
                                            metavar="ACTION")
    install = models_commands.add_parser(
        "install", help="build an asset from licensed SMPL-X (+ FLAME) files into PEAR_HOME")
    install.add_argument("--smplx", required=True, type=Path, help="SMPLX_NEUTRAL.npz (or other "
                         "gender)")
    install.add_argument("--flame", type=Path, help="FLAME model (.pkl of plain arrays, or .npz; "
                         "see scripts/convert_flame_pkl.py for chumpy pickles)")
    install.add_argument("--correspondence", type=Path,
                         help="SMPL-X__FLAME_vertex_ids.npy (needed with --flame)")
    install.add_argument("--eyelids", type=Path,
                         help="optional .npz with l_eyelid/r_eyelid blend shapes (5023x3 each)")
    install.add_argument("--id", help="asset id (default: the kind, 'smplx+flame' or 'smplx')")
    install.add_argument("--num-betas", type=int, default=300)
    install.add_argument("--num-head-shape", type=int, default=300)
    install.add_argument("--num-expression", type=int, default=50)
    install.set_defaults(handler=_models_install)
    build_open = models_commands.add_parser(
        "build-open", help="build the free default body model from anny (commercial use OK)")
    build_open.add_argument("--components", type=int, default=20, help="shape components")
    build_open.add_argument("--samples", type=int, default=4000,
                            help="anny phenotypes sampled for the shape basis")
    build_open.add_argument("--quick", action="store_true",
                            help="render 4 face views instead of 33 to embed the landmarks "
                            "(coarser; for trials and tests)")
    build_open.set_defaults(handler=_models_build_open)
    preview = models_commands.add_parser("preview", help="render a PNG contact sheet of an asset")
    preview.add_argument("asset", nargs="?", default=DEFAULT_ASSET_ID,
                         help=f"asset id (default: {DEFAULT_ASSET_ID})")
    preview.add_argument("--out", default="preview.png", type=Path)
    preview.set_defaults(handler=_models_preview)
    listing = models_commands.add_parser("list", help="show installed assets")
    listing.add_argument("--json", action="store_true", help="one JSON list on stdout")
    listing.set_defaults(handler=_models_list)

    priors = commands.add_parser("priors", help="the pose prior the tracker learns from "
                                 "motion capture")
    priors_commands = priors.add_subparsers(dest="priors_command", required=True,
                                            metavar="ACTION")
    train = priors_commands.add_parser(
        "train", help="fit the pose prior to BVH motion capture (e.g. the CMU database)")
    train.add_argument("--mocap", required=True, type=Path,
                       help="a folder of BVH clips (searched recursively; docs/tracker.md)")
    train.add_argument("--asset", default=DEFAULT_ASSET_ID,
                       help=f"body model (default: {DEFAULT_ASSET_ID})")
    train.add_argument("--out", type=Path, help="the prior file (default: "
                       "$PEAR_HOME/priors/pose_prior_<asset>.npz, which the tracker then uses)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_priors_train)
    show = priors_commands.add_parser("show", help="which prior the tracker uses and its scores")
    show.add_argument("--asset", default=DEFAULT_ASSET_ID,
                      help=f"body model (default: {DEFAULT_ASSET_ID})")
    show.set_defaults(handler=_priors_show)

    bench = commands.add_parser("bench", help="benchmarks that print one JSON object")
    bench.add_argument("target", choices=["ehm", "open-model", "tracker", "server", "blender",
                                          "regressor", "renderer", "cluster", "live"],
                       help="ehm: body-model forward vs the smplx package; open-model: build, "
                       "load, speed and anny equivalence of the free default asset; tracker: "
                       "speed and accuracy on a 300-frame synthetic clip; server: served vs "
                       "in-process frames/s on the tracker path, and with 1, 4, 8 clients; "
                       "blender: keyframing 300 frames, and bake frames/s; regressor: PEAR "
                       "network img/s (torch, ONNX Runtime) against the matmul roofline; "
                       "renderer: Gaussian rasterizer and avatar network ms, and the "
                       "rasterizer over its brute-force reference; cluster: bakes on Ray "
                       "against local ones, split clips, a killed worker (docs/cluster.md); "
                       "live: a 640x480 movie played at 30 fps through a live server session: "
                       "fps, latency, dropped frames, accuracy against the offline fit")
    bench.add_argument("--json", action="store_true", help="print only the JSON object")
    bench.add_argument("--repeats", type=int,
                       help="timed runs per measurement (default: 20; the tracker: 1 fit)")
    bench.add_argument("--frames", type=int, help="tracker, live: the clip's length "
                       f"(default {TRACKER_BENCH_FRAMES}; live: 150)")
    bench.add_argument("--checkpoint", help="tracker: the regressor for the regressor+tracker "
                       "fields (default: the one installed for the body model, if any)")
    bench.add_argument("--mocap", help="tracker, live: BVH clips whose held-out subjects move the "
                       "clip: the folder the prior was trained on (default: "
                       "../shared/data/mocap/cmu when it exists, else a procedural motion)")
    bench.set_defaults(handler=_bench)

    fit = commands.add_parser("fit", help="footage -> expressive 3D motion (MediaPipe + tracker)")
    fit.add_argument("footage", type=Path, help="a video, an image or a folder of images")
    fit.add_argument("-o", "--output", type=Path, required=True, help="result .npz")
    fit.add_argument("--asset", default=DEFAULT_ASSET_ID,
                     help=f"body model (default: {DEFAULT_ASSET_ID})")
    fit.add_argument("--smooth", type=float, default=1.0,
                     help="temporal smoothness strength (0 = off, 1 = default)")
    fit.add_argument("--no-contact", action="store_true",
                     help="do not keep feet that touch the ground still (the tracker's "
                          "contact stage; e.g. for footage of someone on a moving floor)")
    fit.add_argument("--no-face-scores", action="store_true", help=FACE_SCORES_HELP)
    fit.add_argument("--focal", type=float, help="focal length in pixels, if known")
    fit.add_argument("--on-error", choices=["skip", "fail"], default="skip",
                     help="what an undecodable frame does (reported either way)")
    fit.add_argument("--max-frames", type=int, help="only the first N frames")
    fit.add_argument("--person", type=_person_number, help=PERSON_HELP)
    fit.add_argument("--estimator", default="tracker", choices=list(ESTIMATORS),
                     help=ESTIMATOR_HELP)
    fit.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    fit.add_argument("--adapter", type=Path, metavar="DIR", help=ADAPTER_HELP)
    fit.add_argument("--overlay", type=Path, help="also write a video of the mesh over the "
                     "footage (.mp4)")
    add_cluster_arguments(fit)
    fit.set_defaults(handler=_fit)

    bake = commands.add_parser("bake", help="footage -> a keyframed rig in .blend (and FBX, "
                               "glTF, results), headless")
    bake.add_argument("footage", type=Path, nargs="+",
                      help="videos, images or folders of images; one .blend per clip")
    bake.add_argument("--out", type=Path, required=True, help="output folder")
    bake.add_argument("--fbx", action="store_true", help="also export FBX (with animation)")
    bake.add_argument("--glb", action="store_true", help="also export glTF binary")
    bake.add_argument("--bvh", action="store_true", help="also export the PEAR armature's "
                      "animation as BVH")
    bake.add_argument("--npz", action="store_true", help="also write the result file")
    bake.add_argument("--retarget", metavar="PRESET",
                      help="also key a character with the motion: mixamo, ue5_mannequin, "
                      "rigify_metarig, auto (by bone names) or a preset file (docs/blender.md)")
    bake.add_argument("--target-rig", type=Path, metavar="FILE",
                      help="the character for --retarget: a .blend or .fbx")
    bake.add_argument("--target-armature", metavar="NAME",
                      help="the character's armature, when its file holds several")
    bake.add_argument("--estimator", default="tracker", choices=list(ESTIMATORS),
                      help=ESTIMATOR_HELP)
    bake.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    bake.add_argument("--adapter", type=Path, metavar="DIR", help=ADAPTER_HELP)
    bake.add_argument("--asset", default=DEFAULT_ASSET_ID,
                      help=f"body model (default: {DEFAULT_ASSET_ID})")
    bake.add_argument("--smooth", type=float, default=1.0,
                      help="temporal smoothness strength (0 = off, 1 = default)")
    bake.add_argument("--no-contact", action="store_true",
                      help="do not keep feet that touch the ground still")
    bake.add_argument("--no-face-scores", action="store_true", help=FACE_SCORES_HELP)
    bake.add_argument("--focal", type=float, help="focal length in pixels, if known")
    bake.add_argument("--max-frames", type=int, help="only the first N frames of each clip")
    who = bake.add_mutually_exclusive_group()
    who.add_argument("--person", type=_person_number, help=PERSON_HELP)
    who.add_argument("--people", choices=["all"],
                     help="all: everyone in the first frame showing anybody, each baked into "
                     "a rig of their own (Person1, Person2 ... from the left)")
    bake.add_argument("--overlay", action="store_true",
                      help="also write <clip>_overlay.mp4: the fitted mesh over the footage")
    bake.add_argument("--no-background", action="store_true",
                      help="do not show the footage behind the camera")
    bake.add_argument("--body-shape-keys", action="store_true",
                      help="also add shape keys for the leading body-shape components")
    add_cluster_arguments(bake)
    bake.add_argument("--force", action="store_true", help="with --ray: bake clips again even "
                      "if their outputs are complete (a rerun skips those by default)")
    bake.add_argument("--report", type=Path, help="with --ray: where the JSON report goes "
                      "(default: OUT/report.json)")
    bake.set_defaults(handler=_bake)

    live = commands.add_parser("live", help="a camera, stream or movie -> the body per frame as "
                               "it plays (docs/live.md)")
    live.add_argument("source", help="a camera index (0) or device (/dev/video0), a stream URL "
                      "(rtsp://, http://, ...) or a movie file, played at its own frame rate")
    live.add_argument("--out", type=Path, required=True, help="result .npz of what was answered")
    live.add_argument("--preview", action="store_true", help="show the body over the frames in "
                      "a window (where a display exists; headless, the fps is printed)")
    live.add_argument("--seconds", type=float, help="stop after this long (default: when the "
                      "source ends, or Ctrl-C)")
    live.add_argument("--all-frames", action="store_true", help="a movie: take every frame, "
                      "however slow, instead of dropping those that come while busy")
    live.add_argument("--asset", default=DEFAULT_ASSET_ID,
                      help=f"body model (default: {DEFAULT_ASSET_ID})")
    live.add_argument("--estimator", default="tracker", choices=list(ESTIMATORS),
                      help=ESTIMATOR_HELP)
    live.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    live.add_argument("--adapter", type=Path, metavar="DIR", help=ADAPTER_HELP)
    live.add_argument("--smooth", type=float, default=1.0,
                      help="the online filter's strength (0 = off, 1 = default)")
    live.add_argument("--focal", type=float, help="focal length in pixels, if known")
    live.add_argument("--server", metavar="ENDPOINT", help="have this server answer (e.g. "
                      "tcp://gpu-box:5555; `backend serve`) instead of this process; the result "
                      "is then the server's whole-clip fit of the frames it saw")
    live.add_argument("--timeout", type=float, default=60.0,
                      help="--server: seconds to wait for a reply")
    live.set_defaults(handler=_live)

    people = commands.add_parser("people", help="who is in the footage, numbered for --person")
    people.add_argument("footage", type=Path, help="a video, an image or a folder of images")
    people.add_argument("--out", type=Path, help="also write that frame with the people boxed "
                        "and numbered (PNG/JPEG)")
    people.add_argument("--max-frames", type=int, default=300,
                        help="look for people in this many frames at most (default 300)")
    people.set_defaults(handler=_people)

    evaluation = commands.add_parser("eval", help="accuracy on annotated data")
    evaluation.add_argument("dataset", choices=["coco-wholebody"])
    evaluation.add_argument("--data", type=Path, required=True,
                            help="folder with a *wholebody*.json and its images")
    evaluation.add_argument("--asset", default=DEFAULT_ASSET_ID)
    evaluation.add_argument("--crop-scale", type=float, nargs="+", metavar="SCALE",
                            help="the crops around each person's box the detector sees, as "
                            "multiples of the box, their detections fused point by point "
                            "(default: the ones chosen by measurement, docs/tracker.md)")
    evaluation.add_argument("--json", action="store_true", help="print only the JSON object")
    evaluation.set_defaults(handler=_eval)

    serve = commands.add_parser("serve", help="run the backend server (ZeroMQ, docs/protocol.md)")
    serve.add_argument("--gpu", help="CUDA device index, or 'cpu' (default: GPU 0 if present)")
    serve.add_argument("--bind", default=ServerConfig.bind,
                       help="address to listen on (default %(default)s; anything but loopback "
                       "needs --keys)")
    serve.add_argument("--keys", type=Path, help="folder made by `backend keys generate`: "
                       "encrypt and admit only its authorized clients")
    serve.add_argument("--checkpoint", help=CHECKPOINT_HELP + " (one folder for every asset)")
    serve.add_argument("--adapter", metavar="DIR", help=ADAPTER_HELP)
    serve.add_argument("--renderer", help="the avatar ops' renderer checkpoint folder, one for "
                       "every asset (default: $PEAR_HOME/checkpoints/<asset>/renderer; "
                       "without one the avatar ops are unavailable)")
    serve.add_argument("--compile", action="store_true",
                       help="run the regressor through torch.compile: its first session waits "
                       "for the compilation (~40 s for ViT-S on 2 CPU cores), later frames run "
                       "faster")
    serve.add_argument("--estimator", action="append", choices=[*ESTIMATORS, "detector"],
                       help="offer only these estimators (repeatable; default: all)")
    serve.add_argument("--max-batch", type=int, default=ServerConfig.max_batch,
                       help="frames the worker takes at a time across sessions: detected one "
                       "by one, then the regressor runs on those that need it as one batched "
                       "forward per body model (default %(default)s)")
    serve.add_argument("--window", type=int, default=ServerConfig.window,
                       help="frames in flight per session (default %(default)s)")
    serve.add_argument("--max-sessions", type=int, default=ServerConfig.max_sessions,
                       help="sessions open at once (default %(default)s)")
    serve.add_argument("--session-timeout", type=float, default=ServerConfig.session_timeout,
                       help="seconds of client silence before its session is reclaimed "
                       "(default %(default)s)")
    serve.add_argument("--shutdown-grace", type=float, default=ServerConfig.shutdown_grace,
                       help="on SIGINT/SIGTERM, seconds to finish queued work before failing "
                            "the rest with `cancelled` (default %(default)s)")
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="CURVE keys for `backend serve --keys`")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_commands.add_parser("generate", help="make server and client key pairs")
    generate.add_argument("directory", type=Path)
    generate.set_defaults(handler=_keys_generate)

    avatar = commands.add_parser(
        "avatar", help="the person in one image, animated by a recovered motion: a Gaussian "
        "avatar rendered into a video (needs a trained renderer: docs/avatar.md)")
    avatar.add_argument("source", metavar="SOURCE_IMAGE", help="an image showing the person")
    avatar.add_argument("--motion", required=True, metavar="RESULT.npz",
                        help="a `backend fit` result file whose motion drives the avatar")
    avatar.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write")
    avatar.add_argument("--checkpoint", metavar="DIR",
                        help="the renderer (default: $PEAR_HOME/checkpoints/<asset>/renderer)")
    avatar.add_argument("--side-by-side", action="store_true",
                        help="put the motion's footage, cropped the same way, beside the avatar")
    avatar.add_argument("--asset", default=DEFAULT_ASSET_ID,
                        help="body model (default: %(default)s)")
    avatar.set_defaults(handler=_avatar)

    demo = commands.add_parser("demo", help="run the deepest end-to-end path on built-in data")
    demo.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    demo.add_argument("--frames", type=int, default=60)
    demo.set_defaults(handler=_demo)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen handler, caches routed into ``$PEAR_HOME``;
    the one place where errors become what a user sees (``pear-train`` runs through it too)."""
    args = parser.parse_args(argv)
    route_caches()
    try:
        return args.handler(args)
    except PearError as error:  # what the user can fix: one line, no traceback
        print(describe(error), file=sys.stderr)
        return exit_code(error)
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except Exception as error:  # a bug: the traceback helps whoever fixes it
        traceback.print_exc()
        print(describe_bug(error), file=sys.stderr)
        return EXIT_BUG


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

"""``backend live SOURCE --out RESULT.npz``: live capture without Blender. Each frame's body
is recovered as it comes (in this process, or by a server with ``--server``); the answers are
saved as a result file (docs/results.md) when the source ends or on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..compiling import compiling_enabled
from ..errors import InputError
from .run import LiveAnswer, LiveRun, run_in_process, run_through_session
from .sources import LiveFrame, open_source

PREVIEW_WINDOW = "backend live (q or Esc to stop)"


def display_available() -> bool:
    """Whether a preview window can open: a desktop session on Linux; always elsewhere."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY")
                                                        or os.environ.get("WAYLAND_DISPLAY"))


def live_command(args: argparse.Namespace, load_asset, load_regressor) -> int:
    from ..pipeline.live import LiveRecovery
    from ..results import save_results

    if args.out.suffix != ".npz":
        raise InputError(f"--out {args.out}: the result is a .npz file (docs/results.md)")
    preview = args.preview and display_available()
    if args.preview and not preview:
        print("no display here: running without the preview window", file=sys.stderr)
    source = open_source(args.source, realtime=not args.all_frames)
    asset = load_asset(args.asset)
    stop = _StopFlag()
    show = _Preview(asset, source, args.focal, stop) if preview else None
    meter = _FpsMeter()
    with source:
        if args.server:
            return _through_server(args, source, asset, stop, show, meter)
        regressor = load_regressor(args, asset)
        if args.estimator != "regressor" and compiling_enabled():
            print("preparing the live fit (compiling its steps: a few minutes the first time "
                  "on this machine, seconds after) ...", flush=True)
        recovery = LiveRecovery(source.width, source.height, asset, estimator=args.estimator,
                                regressor=regressor, fps=source.fps, focal=args.focal,
                                smooth=args.smooth)
        try:
            run = run_in_process(recovery, source, _both(meter, show), stop, args.seconds)
        finally:
            recovery.close()
        results = recovery.answered()
        results.info.update(_run_info(run, args.source))
        save_results(results, args.out)
    _report(run, args.out)
    return 0


def _through_server(args, source, asset, stop, show, meter) -> int:
    """The same, each frame answered by the server's live session; its clip is closed
    at the end and its whole-clip result saved (the live answers in ``info``)."""
    from ..results import save_results
    from ..server.client import Client

    if args.checkpoint is not None or args.adapter is not None:
        raise InputError("--checkpoint and --adapter choose this process's regressor; with "
                         "--server the server's own is used (`backend serve --checkpoint "
                         "--adapter`)")
    with Client(args.server, timeout=args.timeout) as client:
        session = client.open_session(args.estimator, asset=asset.asset_id, smooth=args.smooth,
                                      fps=source.fps, live=True,
                                      intrinsics=None if args.focal is None
                                      else {"focal": args.focal})
        run = run_through_session(source, session, on_answer=_both(meter, show),
                                  should_stop=stop, max_seconds=args.seconds)
        results = session.finish()
    results.info.update(_run_info(run, args.source))
    save_results(results, args.out)
    _report(run, args.out)
    return 0


def _run_info(run: LiveRun, source: str) -> dict:
    return {"live_source": source, "live": run.summary(), "live_source_stats": run.source}


def _report(run: LiveRun, out: Path) -> None:
    summary = run.summary()
    line = f"\n{summary['frames']} frames answered in {run.seconds:.1f} s"
    if "fps" in summary:
        line += (f": {summary['fps']} fps after the first, latency "
                 f"{summary['latency_ms_p50']} ms (median), {summary['latency_ms_p95']} ms "
                 f"(95 %), {100 * summary['drop_frac']:.0f} % of the source's frames dropped "
                 "while busy")
    print(f"{line}; wrote {out}")


def _both(*callbacks):
    def call(answer: LiveAnswer, frame: LiveFrame) -> None:
        for callback in callbacks:
            if callback is not None:
                callback(answer, frame)
    return call


class _StopFlag:
    """Ctrl-C ends the run (its answers are saved), not the program."""

    def __init__(self):
        import signal

        self.stopped = False
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_) -> None:
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped

    def set(self) -> None:
        self.stopped = True


class _FpsMeter:
    """Headless: the answered frames per second, once a second, on one line."""

    def __init__(self):
        self.started, self.count, self.shown = time.monotonic(), 0, 0.0

    def __call__(self, answer: LiveAnswer, _frame: LiveFrame) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.shown >= 1.0:
            self.shown = now
            print(f"\r{self.count / (now - self.started):5.1f} fps  frame {answer.index}  "
                  f"latency {1000 * answer.latency_s:4.0f} ms", end="", file=sys.stderr,
                  flush=True)


class _Preview:
    """A window showing each answered frame with the body drawn over it."""

    def __init__(self, asset, source, focal: float | None, stop: _StopFlag):
        import torch

        from ..body.model import BodyModel
        from ..camera import principal_point

        self.model = BodyModel(asset)
        self.faces = torch.as_tensor(asset.arrays["faces"])
        self.stop = stop
        self.focal = focal or float(max(source.width, source.height))
        self.center = principal_point(source.width, source.height)

    def __call__(self, answer: LiveAnswer, frame: LiveFrame) -> None:
        import cv2
        import torch

        from ..pipeline.overlay import draw_mesh, meshes_on_screen

        image = frame.image
        if answer.params is not None:
            with torch.no_grad():
                vertices = self.model({k: torch.as_tensor(v) for k, v in answer.params.items()
                                       }).vertices
            screen, colors = meshes_on_screen(vertices, torch.as_tensor(answer.cam_t),
                                              self.faces, self.focal, self.center)
            image = draw_mesh(image, screen[0], colors[0], self.faces.numpy())
        cv2.imshow(PREVIEW_WINDOW, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

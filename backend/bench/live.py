"""``backend bench live``: live capture through a server on loopback.

A 10-second 640x480 synthetic clip with exact truth (the open model's painted look performing a
held-out CMU clip, else the procedural motion) is written as a movie and played twice through
a ``backend serve`` child's ``live`` session (tracker estimator):

- in real time at 30 fps, the newest frame sent whenever fewer than two were unanswered
  (``run_through_session``: the server detects one while it fits the other):
  ``fps`` answered, ``latency_ms_p50`` / ``_p95`` (a frame's capture to its answer, served
  over loopback), ``drop_frac`` (the source's frames that came while the server was busy),
  after the movie's first frame was sent alone (``first_answer_ms``: the session's models
  loading and the first frame's longer fit, as when a capture starts), and
  ``realtime_pa_mpjpe_mm``: the accuracy of those answers, what a live rig shows;
- every frame (nothing dropped): ``pa_mpjpe_mm`` of the live answers, beside
  ``offline_pa_mpjpe_mm``, the same session's whole-clip fit of the same detections
  (``session.close``), and their ratio (the goal: within 1.5x);
- every frame in this process, as ``backend live --all-frames`` answers it (one torch
  thread): ``in_process_fps`` with detection and fit one after the other,
  ``in_process_pipelined_fps`` with them on two threads (``run_pipelined``), and their ratio
  ``pipelined_speedup``;
- in real time in this process, as ``backend live`` answers a camera (pipelined):
  ``in_process_realtime_fps``, ``_latency_ms_p50`` / ``_p95``, ``_drop_frac`` and
  ``_pa_mpjpe_mm``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..body import registry
from ..body.model import BodyModel
from ..live.run import LiveRun, run_in_process, run_through_session
from ..live.sources import open_source
from ..pipeline.demo import write_movie
from ..pipeline.live import LiveRecovery
from ..server.client import Client
from ..server.process import serve_process
from ..tracking.metrics import body_pa_mm
from ..tracking.render_clip import render_frames
from ..tracking.synthetic import make_clip
from .tracker import bench_motion

SIZE = (640, 480)
FOCAL = 600.0


def write_clip(asset, frames: int, path: Path, mocap: str | None = None):
    """The synthetic clip (``make_clip``) rendered to ``path``; returns the clip and what moves
    it."""
    model = BodyModel(asset).double()
    motion, described = bench_motion(model, mocap, frames + 1)
    if motion is not None:  # a capture's first frame is its calibration pose: not a motion
        motion = {name: value[1:] for name, value in motion.items()}
        frames = min(frames, len(motion["body_pose"]))
    clip = make_clip(BodyModel(asset), frames=frames, seed=0, motion=motion, size=SIZE,
                     focal=FOCAL)
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    write_movie(render_frames(model, clip.params, clip.cam_t, clip.focal, SIZE, colors), path)
    return clip, described


def answers_pa_mm(model: BodyModel, run: LiveRun, truth: np.ndarray) -> tuple[float, int]:
    """Body PA-MPJPE of a run's answers against the truth of the frames they answer, and how
    many answers carried a body."""
    answered = [a for a in run.answers if a.params is not None]
    params = {name: np.concatenate([a.params[name] for a in answered])
              for name in answered[0].params}
    return body_pa_mm(model, params, truth[[a.index for a in answered]]), len(answered)


def in_process_fields(asset, movie: Path, model: BodyModel, truth: np.ndarray) -> dict:
    """``movie`` answered in this process as ``backend live`` answers it
    (``run_in_process``): every frame (``--all-frames``) with detection and fit one after
    the other and pipelined, their frames per second and ratio; then played in real time,
    pipelined, its frames per second, latency and the answers' body PA-MPJPE against
    ``truth`` (posed by ``model``)."""
    fields = {}
    for pipelined, realtime in ((False, False), (True, False), (True, True)):
        with open_source(movie, realtime=realtime) as source:
            recovery = LiveRecovery(source.width, source.height, asset, fps=source.fps,
                                    focal=FOCAL)
            try:
                run = run_in_process(recovery, source, pipelined=pipelined)
            finally:
                recovery.close()
        summary = run.summary()
        if not realtime:
            fields["in_process_pipelined_fps" if pipelined else "in_process_fps"] = \
                summary["fps"]
            continue
        fields.update({
            "in_process_realtime_fps": summary["fps"],
            "in_process_realtime_latency_ms_p50": summary["latency_ms_p50"],
            "in_process_realtime_latency_ms_p95": summary["latency_ms_p95"],
            "in_process_realtime_drop_frac": summary["drop_frac"],
            "in_process_realtime_pa_mpjpe_mm": answers_pa_mm(model, run, truth)[0]})
    fields["pipelined_speedup"] = round(fields["in_process_pipelined_fps"]
                                        / fields["in_process_fps"], 2)
    return fields


def run_live_bench(progress: bool = True, frames: int = 300, mocap: str | None = None) -> dict:
    say = print if progress else (lambda *_: None)
    asset = registry.load(progress=say)
    model = BodyModel(asset).double()
    with tempfile.TemporaryDirectory() as folder:
        movie = Path(folder) / "live_bench.mp4"
        say(f"rendering a {frames}-frame {SIZE[0]}x{SIZE[1]} clip ...")
        clip, described = write_clip(asset, frames, movie, mocap)
        say("starting `backend serve` ...")
        with serve_process(None, "--estimator", "tracker") as server, \
                Client(server.endpoint, timeout=600) as client:
            intrinsics = {"focal": FOCAL}
            say("playing it in real time through a live session ...")
            session = client.open_session("tracker", fps=30.0, live=True, intrinsics=intrinsics)
            # Its first frame alone first, as a user's capture starts: the session's models
            # load and the body is found (``first_answer_ms``), then the movie plays.
            started = time.perf_counter()
            with open_source(movie, realtime=False) as source:
                session.receive(session.send_frame(0, 0.0, source.next().image, "raw"))
            first_answer_ms = 1000 * (time.perf_counter() - started)
            with open_source(movie) as source:
                realtime = run_through_session(source, session, "raw", first_index=1)
            session.cancel()
            say("every frame through a live session, then its whole-clip fit ...")
            session = client.open_session("tracker", fps=30.0, live=True, intrinsics=intrinsics)
            started = time.perf_counter()
            with open_source(movie, realtime=False) as source:
                everything = run_through_session(source, session, "raw")
            live_s = time.perf_counter() - started
            offline = session.finish()
        say("in this process: every frame, one stage after the other, then pipelined; then "
            "in real time ...")
        in_process = in_process_fields(asset, movie, model, clip.joints)
    live_pa, answered = answers_pa_mm(model, everything, clip.joints)
    realtime_pa, _ = answers_pa_mm(model, realtime, clip.joints)
    offline_pa = body_pa_mm(model, {k: v for k, v in offline.params.items() if k != "transl"},
                            clip.joints[offline.frames])
    return {
        **realtime.summary(),
        "first_answer_ms": round(first_answer_ms, 1),
        "source_fps": 30.0,
        "source_drop_frac": round(realtime.source["drop_frac"], 3),
        "frame_size": list(SIZE),
        "motion": described,
        "pa_mpjpe_mm": live_pa,
        "realtime_pa_mpjpe_mm": realtime_pa,
        "offline_pa_mpjpe_mm": offline_pa,
        "online_vs_offline": round(live_pa / offline_pa, 2),
        "all_frames_fps": round(len(everything.answers) / live_s, 2),
        "answered_frames": answered,
        **in_process,
        "estimator": "tracker",
        "threads": torch.get_num_threads(),
    }

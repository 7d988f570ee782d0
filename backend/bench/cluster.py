"""``backend bench cluster``: what running a bake on Ray costs and buys, measured in one run.

Each bake is the command a user runs (``backend bake ... --npz``, a process of its own), on
demo clips the project renders:

- ``local_s`` / ``ray_s``: four clips baked one after another, then with ``--ray`` (a local
  Ray on this machine's cores, started by the command); ``ray_overhead_frac`` =
  ``ray_s / local_s - 1`` (goal <= 0.15 where, as on 2 cores, no speed-up is possible).
- ``long_clip_s`` / ``chunked_long_clip_s``: one long clip on Ray whole, then split into parts
  (``--part-frames``) fitted on several workers; ``chunked_vs_whole_mm``: how far the split
  clip's joints are from the whole one's (mean, mm).
- ``retry_s``: the four clips on Ray again with one worker killed mid-fit; the time lost.
- ``task_overhead_ms``: a Ray actor call's round trip; ``frame_s``: a worker's seconds per
  frame (the local bake's time over its frames); ``scaleout_fps``: frames/s for 1, 8 and 64
  workers like this machine's, ``n / (frame_s + task_overhead / part_frames)`` each — the
  model of docs/cluster.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cluster.ray_run import WORKER_TITLE, worker_processes

CLIP_FRAMES = 60
LONG_FRAMES = 240
PART_FRAMES = 80  # the long clip in three parts: the two after the first run side by side
SCALEOUT = (1, 8, 64)


def run_cluster_bench(progress: bool = True, frames: int = CLIP_FRAMES,
                      long_frames: int = LONG_FRAMES) -> dict:
    from ..body import registry
    from ..body.model import BodyModel
    from ..pipeline.demo import demo_motion, render_demo_clip

    say = print if progress else (lambda *_: None)
    asset = registry.load(progress=say)
    model = BodyModel(asset).double()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        import torch

        colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
        names = asset.meta.get("expression_names", [])
        say(f"rendering four {frames}-frame clips and one of {long_frames} ...")
        clips = []
        for number in range(4):
            clip = root / f"clip{number + 1}.mp4"
            render_demo_clip(model, colors, demo_motion(model, frames + 7 * number, names),
                             clip)
            clips.append(clip)
        long_clip = root / "long.mp4"
        render_demo_clip(model, colors, demo_motion(model, long_frames, names), long_clip)
        total = sum(frames + 7 * number for number in range(4))

        say("baking the four clips locally ...")
        local_s = _timed_bake(clips, root / "local")
        say("... and on Ray")
        ray_s = _timed_bake(clips, root / "ray", "--ray")
        say(f"the {long_frames}-frame clip on Ray, whole and in parts of {PART_FRAMES} ...")
        long_s = _timed_bake([long_clip], root / "whole", "--ray", "--part-frames", "0")
        chunked_s = _timed_bake([long_clip], root / "parts", "--ray", "--part-frames",
                                str(PART_FRAMES))
        say("the four clips on Ray with a worker killed mid-fit ...")
        killed_s = _timed_bake(clips, root / "killed", "--ray", kill_one=True)
        gap_mm = _joint_gap_mm(model, root / "whole" / "long.npz", root / "parts" / "long.npz")
    overhead_ms = _task_overhead_ms()
    frame_s = local_s / total
    per_frame = frame_s + overhead_ms / 1000 / 300  # a task per default part of 300 frames
    return {
        "clips": 4, "clip_frames": total, "local_s": round(local_s, 2),
        "ray_s": round(ray_s, 2), "ray_overhead_frac": round(ray_s / local_s - 1, 3),
        "long_clip_frames": long_frames, "long_clip_s": round(long_s, 2),
        "chunked_long_clip_s": round(chunked_s, 2), "part_frames": PART_FRAMES,
        "chunked_vs_whole_mm": round(gap_mm, 2),
        "retry_s": round(killed_s - ray_s, 2),
        "task_overhead_ms": round(overhead_ms, 3), "frame_s": round(frame_s, 4),
        "scaleout_fps": {str(n): round(n / per_frame, 1) for n in SCALEOUT},
        "cpus": os.cpu_count(),
    }


def _timed_bake(clips: list[Path], out: Path, *options: str, kill_one: bool = False) -> float:
    command = [sys.executable, "-m", "backend.cli", "bake", *map(str, clips), "--out",
               str(out), "--npz", *options]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if kill_one:
        _kill_a_fitting_worker(process)
    log = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log[0]}{log[1]}")
    return time.perf_counter() - start


def _kill_a_fitting_worker(process: subprocess.Popen) -> None:
    """SIGKILL the first of our Ray workers seen fitting a part, a second into it."""
    while process.poll() is None:
        for pid, title in worker_processes().items():
            if title.startswith(f"{WORKER_TITLE}.fit_part"):
                time.sleep(1.0)
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.1)


def _joint_gap_mm(model, whole: Path, parts: Path) -> float:
    import torch

    from ..results import load_results

    def joints(path: Path):
        results = load_results(path)
        params = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in results.params.items()}
        with torch.no_grad():
            return model(params).joints

    return float((joints(whole) - joints(parts)).norm(dim=-1).mean()) * 1000


def _task_overhead_ms(calls: int = 200) -> float:
    """Mean round trip of an empty call to a Ray actor, on a local Ray."""
    from ..cluster.ray_run import connect, disconnect
    from ..paths import pear_home

    ray, set_here = connect(None, pear_home())
    try:
        echo = ray.remote(num_cpus=1)(_Echo).remote()
        ray.get(echo.ping.remote())
        start = time.perf_counter()
        for _ in range(calls):
            ray.get(echo.ping.remote())
        return (time.perf_counter() - start) / calls * 1000
    finally:
        disconnect(ray, set_here)


class _Echo:
    def ping(self) -> int:
        return 0

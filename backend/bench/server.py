"""``backend bench server``: what serving costs over doing the same work in-process.

The frames are a clip the project renders of the open body model performing (no footage is
shipped). Both paths run the tracker estimator end to end: Holistic on every frame, then the
tracker fit over the clip. In-process means calling ``ClipDetector`` and ``recover_clip``
directly; served means a ``backend serve`` child process on loopback, frames sent raw by the
client with a window in flight, per-frame replies received and the clip's result returned by
``session.close``. ``stream_*`` numbers cover the per-frame phase alone (no fit), where the
transport's share is largest.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from ..body import registry
from ..perception.frames import Frame
from ..perception.holistic import ClipDetector
from ..pipeline.demo import demo_frames
from ..pipeline.recovery import recover_clip
from ..server.client import Client, frames_of
from ..server.process import serve_process

FPS = 30.0


def _in_process(images: list[np.ndarray], asset) -> tuple[float, float]:
    """Seconds for (the per-frame phase, the whole clip)."""
    height, width = images[0].shape[:2]
    start = time.perf_counter()
    detector = ClipDetector(width, height)
    for index, image in enumerate(images):
        detector.add(Frame(index, index / FPS, image))
    detections = detector.finish()
    streamed = time.perf_counter() - start
    recover_clip(detections, FPS, asset)
    return streamed, time.perf_counter() - start


def _served(endpoint: str, images: list[np.ndarray]) -> tuple[float, float]:
    with Client(endpoint, timeout=600) as client:
        session = client.open_session(estimator="tracker", fps=FPS)
        start = time.perf_counter()
        replies = list(session.stream(frames_of(images, FPS), image_format="raw"))
        streamed = time.perf_counter() - start
        session.finish()
        total = time.perf_counter() - start
    assert [r["index"] for r in replies] == list(range(len(images)))
    return streamed, total


def _concurrent_fps(endpoint: str, images: list[np.ndarray], clients: int) -> float:
    """Frames/s through the whole tracker path with ``clients`` clients at once."""
    errors: list[BaseException] = []

    def one_client() -> None:
        try:
            _served(endpoint, images)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return clients * len(images) / (time.perf_counter() - start)


def run_server_bench(progress: bool = True, frames: int = 32, repeats: int = 2,
                     clients: tuple[int, ...] = (1, 4, 8)) -> dict:
    """In-process and served runs alternate ``repeats`` times (best of each kept): this
    machine's noise is larger than the difference being measured."""
    say = print if progress else (lambda *_: None)
    asset = registry.load(progress=say)
    say(f"rendering {frames} frames of the demo performance ...")
    images = demo_frames(asset, frames)
    say("starting `backend serve` ...")
    with serve_process(None, "--estimator", "tracker") as server:
        # Warm both sides alike: MediaPipe's start-up, the first fit's allocations.
        _in_process(images[:2], asset)
        _served(server.endpoint, images[:2])
        inproc, served = [], []
        for run in range(repeats):
            say(f"run {run + 1}/{repeats}: in-process, then the same clip served ...")
            inproc.append(_in_process(images, asset))
            served.append(_served(server.endpoint, images))
        (inproc_stream, inproc_total), (served_stream, served_total) = (
            (min(s for s, _ in runs), min(t for _, t in runs)) for runs in (inproc, served))
        fps_clients = {}
        for count in clients:
            say(f"{count} concurrent client(s) ...")
            fps_clients[str(count)] = round(_concurrent_fps(server.endpoint, images, count), 2)
    inproc_fps, served_fps = frames / inproc_total, frames / served_total
    return {
        "frames": frames,
        "frame_size": list(images[0].shape[:2]),
        "estimator": "tracker",
        "image_format": "raw",
        "inproc_fps": round(inproc_fps, 2),
        "served_fps": round(served_fps, 2),
        "overhead_frac": round(1 - served_fps / inproc_fps, 4),
        "stream_inproc_fps": round(frames / inproc_stream, 2),
        "stream_served_fps": round(frames / served_stream, 2),
        "stream_overhead_frac": round(1 - inproc_stream / served_stream, 4),
        "fps_clients": fps_clients,
        "threads": torch.get_num_threads(),
    }

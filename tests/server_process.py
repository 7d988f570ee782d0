"""Helpers for tests that talk to ``backend serve`` subprocesses."""

from __future__ import annotations

import numpy as np


def local_endpoint(endpoint: str) -> str:
    """Where to connect to a server that bound a wildcard address."""
    port = endpoint.rsplit(":", 1)[1]
    return f"tcp://127.0.0.1:{port}"


def noise_frames(count: int, seed: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Small random RGB frames: cheap for the detector, enough to exercise the transport."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(count)]

"""Small timing helpers for the benchmarks (median or fastest of repeats after warm-up)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    return statistics.median(_seconds(fn, repeats, warmup))


def fastest_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """For peaks: the fastest run is the one least disturbed by the rest of the machine."""
    return min(_seconds(fn, repeats, warmup))


def _seconds(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples

"""``backend bench open-model``: build, load and run the free default asset, and check it
against anny's own forward, in one run."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..body.asset import load_asset, save_asset
from ..body.build.open_asset import build_open_asset
from ..body.build.open_equivalence import compare_with_anny, random_open_params
from ..body.model import BodyModel
from ..paths import pear_home, route_caches
from .timing import median_seconds


def run_open_model_bench(repeats: int = 20, progress: bool = True) -> dict:
    say = (lambda message: print(f"... {message}", flush=True)) if progress else (lambda _: None)
    route_caches()
    anny_cache = Path(os.environ["ANNY_CACHE_DIR"])
    cache_was_warm = anny_cache.is_dir() and any(anny_cache.rglob("*.safetensors"))
    build = build_open_asset(progress=say)
    # build_s includes anny's own one-time model-data build when its cache was cold.
    result: dict = {"build_s": build.report["build_s"], "anny_cache_was_warm": cache_was_warm}

    workdir = tempfile.mkdtemp(prefix="bench-open-", dir=pear_home())
    try:
        path = save_asset(build.asset, f"{workdir}/open.npz")
        start = time.perf_counter()
        asset = load_asset(path)
        result["load_s"] = round(time.perf_counter() - start, 4)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    say("timing the forward")
    model = BodyModel(asset)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for batch in (1, 64):
            params = random_open_params(model, batch, generator)
            seconds = median_seconds(lambda p=params: model(p), repeats)
            result[f"ms_b{batch}"] = round(1000 * seconds / batch, 4)
    say("comparing with anny's own forward")
    result.update({k: round(v, 6) for k, v in compare_with_anny(build, count=16).items()})
    result.update(
        shape_components=build.report["shape_components"],
        explained_variance_total=build.report["explained_variance_total"],
        heldout_mean_mm=build.report["heldout_mean_mm"],
        heldout_max_mm=build.report["heldout_max_mm"],
        landmarks={name: len(points) for name, points in asset.landmarks.items()},
        face_spread_mean_mm=build.report["face_spread_mean_mm"],
        face_spread_p95_mm=build.report["face_spread_p95_mm"],
        face_spread_max_mm=build.report["face_spread_max_mm"],
        expression_names=asset.meta["expression_names"],
        threads=torch.get_num_threads(),
    )
    return result

"""``backend bench regressor``: frames per second of the PEAR network on this machine, eager
torch and ONNX Runtime, against the machine's matmul throughput measured in the same run.

- ``configs``: ViT-S and ViT-B (PEAR's) with the PEAR head on 256x192 crops, batch 1 and 8,
  each runtime (eager torch, ONNX Runtime; ViT-S also through ``torch.compile``, whose
  one-off compilation time is ``compile_s``); and one 896x896 image through a Multi-HMR-like
  ViT-L backbone, the high-resolution route PEAR avoids, for the compute ratio.
- ``gflops``: per image, counted by torch's FlopCounterMode (a multiply-add is 2 FLOPs).
- ``gemm_gflops``: the matmul rate of the machine, measured right before and right after each
  configuration is timed (interleaved, so a busy spell of the machine touches both), with the
  same torch threads, on float32 linear layers shaped like that network's (the four of a ViT
  block: qkv, attention output, MLP in and out, at its tokens x width): per measurement the
  fastest of 3 runs of each shape, a peak.
- ``roofline_gflops``: the fastest matmul rate seen in the run, the largest of ``gemm_gflops``
  and of the networks' own rates (img/s x GFLOPs), so no network can read above it;
  ``roofline_frac`` = img/s x GFLOPs / roofline, at most 1: how much of the machine's matmul
  speed a network turns into images.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..body import registry
from ..regressor.layout import ParamLayout
from ..regressor.model import PearRegressor, RegressorConfig
from ..regressor.onnx_export import OnnxRegressor, export_onnx
from ..regressor.vit import CONFIGS, INPUT_SIZE, ViT, ViTConfig
from .timing import fastest_seconds, median_seconds

HIGH_RES = ViTConfig("vit_l_896", 1024, 24, 16, image=(896, 896))


def vit_matmuls(config: ViTConfig, batch: int) -> list[tuple[int, int, int]]:
    """(tokens, inputs, outputs) of the linear layers of one block of ``config`` on ``batch``
    images: qkv, attention output, MLP in, MLP out."""
    tokens = batch * config.grid[0] * config.grid[1]
    hidden = int(config.dim * config.mlp_ratio)
    return [(tokens, config.dim, 3 * config.dim), (tokens, config.dim, config.dim),
            (tokens, config.dim, hidden), (tokens, hidden, config.dim)]


def gemm_gflops(shapes: list[tuple[int, int, int]], repeats: int = 3) -> float:
    """The fastest float32 rate (GFLOP/s) of torch's linear layer over ``repeats`` runs of each
    (tokens, inputs, outputs) shape, in torch's current threads."""
    rates = []
    for tokens, inputs, outputs in shapes:
        x, weight = torch.randn(tokens, inputs), torch.randn(outputs, inputs)
        seconds = fastest_seconds(partial(torch.nn.functional.linear, x, weight,
                                          torch.randn(outputs)), repeats)
        rates.append(2 * tokens * inputs * outputs / seconds / 1e9)
    return max(rates)


def gflops_per_image(model: torch.nn.Module, image: tuple[int, int]) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *image))
    return counter.get_total_flops() / 1e9


def run_regressor_bench(progress: bool = True, repeats: int = 5) -> dict:
    say = print if progress else (lambda *_: None)
    layout = ParamLayout(registry.load(registry.DEFAULT_ASSET_ID).param_spec)
    rows, gemm = [], []

    def measure_gemm(config: ViTConfig, batch: int) -> None:
        gemm.append(gemm_gflops(vit_matmuls(config, batch)))
        say(f"matmuls shaped like {config.name} batch {batch}: {gemm[-1]:.1f} GFLOP/s")

    def add(name: str, runtime: str, batch: int, seconds: float, gflops: float) -> None:
        img_s = batch / seconds
        rows.append({"name": name, "runtime": runtime, "batch": batch, "img_s": round(img_s, 2),
                     "gflops": round(gflops, 2), "gflop_s": img_s * gflops})
        say(f"{name:10} {runtime:13} batch {batch}: {img_s:7.2f} img/s, {gflops:.1f} GFLOPs, "
            f"{img_s * gflops:.1f} GFLOP/s")

    compile_s = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for backbone in ("vit_s", "vit_b"):
            torch.manual_seed(0)
            model = PearRegressor(RegressorConfig(backbone), layout).eval()
            gflops = gflops_per_image(model, INPUT_SIZE)
            onnx = OnnxRegressor(export_onnx(model, Path(folder) / f"{backbone}.onnx"),
                                 threads=torch.get_num_threads())
            compiled = torch.compile(model) if backbone == "vit_s" else None
            for batch in (1, 8):
                measure_gemm(CONFIGS[backbone], batch)
                images = torch.randn(batch, 3, *INPUT_SIZE)
                with torch.no_grad():
                    add(backbone, "torch", batch,
                        median_seconds(partial(model, images), repeats, warmup=2), gflops)
                    if compiled is not None:
                        start = time.perf_counter()
                        compiled(images)  # compiles for this batch size
                        compile_s += time.perf_counter() - start
                        add(backbone, "torch.compile", batch,
                            median_seconds(partial(compiled, images), repeats, warmup=1),
                            gflops)
                add(backbone, "onnxruntime", batch,
                    median_seconds(partial(onnx, images.numpy()), repeats, warmup=2), gflops)
                measure_gemm(CONFIGS[backbone], batch)
    torch.manual_seed(0)
    high_res = ViT(HIGH_RES).eval()
    gflops = gflops_per_image(high_res, HIGH_RES.image)
    image = torch.randn(1, 3, *HIGH_RES.image)
    measure_gemm(HIGH_RES, 1)
    with torch.no_grad():
        add(HIGH_RES.name, "torch", 1, median_seconds(lambda: high_res(image), 1, warmup=0),
            gflops)
    measure_gemm(HIGH_RES, 1)
    roofline = max(gemm + [row["gflop_s"] for row in rows])
    for row in rows:
        row["roofline_frac"] = round(row.pop("gflop_s") / roofline, 3)
    say(f"matmul roofline: {roofline:.1f} GFLOP/s ({torch.get_num_threads()} threads); of it: "
        + ", ".join(f"{r['name']} {r['runtime']} {r['batch']}: {r['roofline_frac']:.0%}"
                    for r in rows))
    pear = next(r for r in rows if r["name"] == "vit_b")
    return {"roofline_gflops": round(roofline, 1),
            "gemm_gflops": [round(rate, 1) for rate in gemm],
            "threads": torch.get_num_threads(),
            "compute_ratio_vs_896": round(gflops / pear["gflops"], 1),
            "compile_s": round(compile_s, 1),
            "backbones": {name: CONFIGS[name].dim for name in ("vit_s", "vit_b")},
            "configs": rows}

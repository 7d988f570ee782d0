"""``backend bench regressor``: frames per second of the PEAR network on this machine, eager
torch and ONNX Runtime, against the machine's matmul throughput measured in the same run.

- ``configs``: ViT-S and ViT-B (PEAR's) with the PEAR head on 256x192 crops, batch 1 and 8,
  each runtime (eager torch, ONNX Runtime; ViT-S also through ``torch.compile``, whose
  one-off compilation time is ``compile_s``); and one 896x896 image through a Multi-HMR-like
  ViT-L backbone, the high-resolution route PEAR avoids, for the compute ratio.
- ``gflops``: per image, counted by torch's FlopCounterMode (a multiply-add is 2 FLOPs).
- ``roofline_gflops``: a 2048^3 float32 GEMM, its fastest of 10 runs; ``roofline_frac`` =
  img/s x GFLOPs / roofline: how much of the machine's matmul speed a network turns into
  images.
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
from .timing import median_seconds

GEMM_SIZE = 2048
HIGH_RES = ViTConfig("vit_l_896", 1024, 24, 16, image=(896, 896))


def roofline_gflops(repeats: int = 10) -> float:
    """The best of ``repeats`` timed GEMMs: a peak, so the fastest run counts."""
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    a @ b  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * GEMM_SIZE**3 / min(seconds) / 1e9


def gflops_per_image(model: torch.nn.Module, image: tuple[int, int]) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *image))
    return counter.get_total_flops() / 1e9


def run_regressor_bench(progress: bool = True, repeats: int = 5) -> dict:
    say = print if progress else (lambda *_: None)
    roofline = roofline_gflops()
    say(f"matmul roofline: {roofline:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    layout = ParamLayout(registry.load(registry.DEFAULT_ASSET_ID).param_spec)
    rows = []

    def add(name: str, runtime: str, batch: int, seconds: float, gflops: float) -> None:
        img_s = batch / seconds
        rows.append({"name": name, "runtime": runtime, "batch": batch, "img_s": round(img_s, 2),
                     "gflops": round(gflops, 2),
                     "roofline_frac": round(img_s * gflops / roofline, 3)})
        say(f"{name:10} {runtime:11} batch {batch}: {img_s:7.2f} img/s, {gflops:.1f} GFLOPs, "
            f"{rows[-1]['roofline_frac']:.0%} of the roofline")

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
    torch.manual_seed(0)
    high_res = ViT(HIGH_RES).eval()
    gflops = gflops_per_image(high_res, HIGH_RES.image)
    image = torch.randn(1, 3, *HIGH_RES.image)
    with torch.no_grad():
        add(HIGH_RES.name, "torch", 1, median_seconds(lambda: high_res(image), 1, warmup=0),
            gflops)
    pear = next(r for r in rows if r["name"] == "vit_b")
    return {"roofline_gflops": round(roofline, 1), "threads": torch.get_num_threads(),
            "compute_ratio_vs_896": round(gflops / pear["gflops"], 1),
            "compile_s": round(compile_s, 1),
            "backbones": {name: CONFIGS[name].dim for name in ("vit_s", "vit_b")},
            "configs": rows}

"""``backend bench renderer``: the Gaussian renderer's speed on this machine.

- ``gaussians``: the avatar's count on the open asset (one per vertex + one per UV texel of the
  default 128² map), posed in a default body filling a 256x256 canvas;
- ``raster_ms``: the rasterizer's forward on that scene, 16 and 32 channels; ``raster_fwd_bwd_ms``:
  forward + backward (gradients to every Gaussian attribute), 32 channels;
- ``avatar_build_ms`` (encoder, template and UV decoders, once per source image) and
  ``render_ms`` (rigging, rasterization and refiner per target frame) of the default avatar
  network at the regressor's 256x192 crop (an untrained network: timing only);
- ``reference_speedup``: the torch compositor over the brute-force per-pixel reference on the
  same splats (``reference_gaussians`` of the scene: the reference's Python loop is slow);
- ``cuda_raster_ms`` (torch back end on CUDA) and ``cuda_gsplat_raster_ms``: null without CUDA
  (or without gsplat).
Medians of repeats after warm-up, in one run.
"""

from __future__ import annotations

import contextlib

import torch

from ..avatar.checkpoint import build_avatar
from ..avatar.config import AvatarConfig
from ..avatar.rigging import rig
from ..body import registry
from ..body.model import BodyModel
from ..camera import to_camera
from ..renderer.gaussians import rasterize
from ..renderer.gaussians.composite import composite
from ..renderer.gaussians.projection import project_gaussians
from ..renderer.gaussians.reference import composite_reference
from .timing import median_seconds

CANVAS = 256
REFERENCE_GAUSSIANS = 2000


def run_renderer_bench(repeats: int = 5, progress: bool = False) -> dict:
    torch.manual_seed(0)
    asset = registry.load("open")
    model = BodyModel(asset)
    avatar = build_avatar(AvatarConfig(), asset).eval()
    with torch.no_grad():
        vertices = to_camera(model(model.default_params(1)).vertices,
                             torch.tensor([[0.0, 0.2, 2.6]]))
    K = torch.tensor([[[1.6 * CANVAS, 0.0, CANVAS / 2], [0.0, 1.6 * CANVAS, CANVAS / 2],
                       [0.0, 0.0, 1.0]]])
    image = torch.rand(1, 3, 256, 192)
    with torch.no_grad():
        gaussians = avatar.build(image, vertices, K)
        means, quats, scales = rig(vertices, avatar.faces, avatar.anchor_faces,
                                   avatar.anchor_bary, gaussians.offsets, gaussians.quats,
                                   gaussians.scales)
    opacities = gaussians.opacities
    view = torch.eye(4)[None]
    count = means.shape[1]
    result: dict = {"gaussians": count, "canvas": [CANVAS, CANVAS]}

    def say(text: str) -> None:
        if progress:
            print(f"bench renderer: {text} ...", flush=True)

    say("rasterizer")
    raster = {}
    for channels in (16, 32):
        colors = torch.rand(1, count, channels)
        with torch.no_grad():
            raster[channels] = 1000 * median_seconds(
                lambda c=colors: rasterize(means, quats, scales, opacities, c, view, K, CANVAS,
                                           CANVAS, backend="torch"), repeats, warmup=1)
    result["raster_ms"] = {str(k): round(v, 1) for k, v in raster.items()}
    inputs = [t.clone().requires_grad_(True)
              for t in (means, quats, scales, opacities, torch.rand(1, count, 32))]

    def forward_backward() -> None:
        rendered, alpha = rasterize(*inputs, view, K, CANVAS, CANVAS, backend="torch")
        (rendered.sum() + alpha.sum()).backward()

    result["raster_fwd_bwd_ms"] = round(1000 * median_seconds(forward_backward, repeats,
                                                              warmup=1), 1)
    say("avatar network")
    with torch.no_grad():
        result["avatar_build_ms"] = round(1000 * median_seconds(
            lambda: avatar.build(image, vertices, K), repeats, warmup=1), 1)
        result["render_ms"] = round(1000 * median_seconds(
            lambda: avatar.render(gaussians, vertices, K, 256, 192), repeats, warmup=1), 1)
    say("brute-force reference")
    part = slice(0, REFERENCE_GAUSSIANS)
    colors = torch.rand(1, REFERENCE_GAUSSIANS, 16)
    with torch.no_grad():
        splats = project_gaussians(means[:, part], quats[:, part], scales[:, part],
                                   opacities[:, part], view, K, CANVAS, CANVAS)
        ours = median_seconds(lambda: composite(splats, colors, CANVAS, CANVAS), repeats)
        reference = median_seconds(lambda: composite_reference(splats, colors, CANVAS, CANVAS),
                                   1, warmup=0)
    result["reference_gaussians"] = REFERENCE_GAUSSIANS
    result["reference_speedup"] = round(reference / ours, 1)
    result.update(_cuda_timings(means, quats, scales, opacities, view, K, repeats))
    result["threads"] = torch.get_num_threads()
    return result


def _cuda_timings(means, quats, scales, opacities, view, K, repeats: int) -> dict:
    timings = {"cuda_raster_ms": None, "cuda_gsplat_raster_ms": None}
    if not torch.cuda.is_available():
        return timings
    scene = [t.cuda() for t in (means, quats, scales, opacities)]
    colors = torch.rand(1, means.shape[1], 32, device="cuda")

    def run(backend: str) -> None:
        rasterize(*scene, colors, view.cuda(), K.cuda(), CANVAS, CANVAS, backend=backend)
        torch.cuda.synchronize()

    with torch.no_grad():
        timings["cuda_raster_ms"] = round(1000 * median_seconds(lambda: run("torch"), repeats),
                                          2)
        # gsplat missing or not compiling here: the field stays null.
        with contextlib.suppress(ImportError, RuntimeError, OSError):
            timings["cuda_gsplat_raster_ms"] = round(
                1000 * median_seconds(lambda: run("gsplat"), repeats), 2)
    return timings

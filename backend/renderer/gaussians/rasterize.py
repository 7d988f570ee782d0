"""One rasterization call, two back ends with the same signature and results: gsplat's CUDA
kernels where they run (CUDA tensors, gsplat installed and compiling there), else the torch
compositor of ``composite.py`` (CPU, or CUDA without gsplat)."""

from __future__ import annotations

import sys

import torch

from .composite import composite
from .projection import EPS2D, project_gaussians

BACKENDS = ("auto", "torch", "gsplat")
_gsplat_failed: str | None = None  # why gsplat could not run here, once known


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
              opacities: torch.Tensor, colors: torch.Tensor, viewmats: torch.Tensor,
              Ks: torch.Tensor, width: int, height: int,
              backgrounds: torch.Tensor | None = None, near: float = 0.01, far: float = 1e10,
              backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Render B sets of N Gaussians, each seen by its own camera.

    means (B, N, 3) world; quats (B, N, 4) w x y z; scales (B, N, 3) (activated: positive);
    opacities (B, N) in [0, 1]; colors (B, N, C), any number of channels (RGB or latent
    features); viewmats (B, 4, 4) world to camera (x right, y down, z forward); Ks (B, 3, 3);
    backgrounds (B, C) or None (black). Returns images (B, H, W, C) and alphas (B, H, W, 1).
    ``backend``: "auto" (gsplat on CUDA when it runs, else torch), "torch" or "gsplat".
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer back end {backend!r}; choose one of {BACKENDS}")
    _check_shapes(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and _gsplat_failed is None):
        try:
            return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks,
                                     width, height, backgrounds, near, far)
        except (ImportError, RuntimeError, OSError) as error:
            if backend == "gsplat":
                raise
            _note_gsplat_failed(error)
    splats = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height,
                               near, far)
    return composite(splats, colors, width, height, backgrounds)


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      backgrounds, near, far):
    from gsplat import rasterization

    images, alphas, _ = rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
        viewmats=viewmats[:, None], Ks=Ks[:, None], width=width, height=height,
        near_plane=near, far_plane=far, eps2d=EPS2D, sh_degree=None, packed=False,
        render_mode="RGB", rasterize_mode="classic",
        backgrounds=None if backgrounds is None else backgrounds[:, None])
    return images[:, 0], alphas[:, 0]


def _note_gsplat_failed(error: Exception) -> None:
    global _gsplat_failed
    _gsplat_failed = f"{type(error).__name__}: {error}"
    print(f"gsplat does not run here ({_gsplat_failed}); rasterizing with the torch back end "
          "(same results, slower). Install gsplat with a CUDA toolkit for the fast path.",
          file=sys.stderr)


def _check_shapes(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds) -> None:
    batch, count = means.shape[:2]
    expected = {"means": (means, (batch, count, 3)), "quats": (quats, (batch, count, 4)),
                "scales": (scales, (batch, count, 3)), "opacities": (opacities, (batch, count)),
                "colors": (colors, (batch, count, colors.shape[-1])),
                "viewmats": (viewmats, (batch, 4, 4)), "Ks": (Ks, (batch, 3, 3))}
    if backgrounds is not None:
        expected["backgrounds"] = (backgrounds, (batch, colors.shape[-1]))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected "
                             f"{shape} (B={batch} images of N={count} Gaussians)")

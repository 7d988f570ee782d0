"""Front-to-back alpha compositing of screen-space splats in torch: the CPU back end (it also runs
on CUDA tensors), differentiable by autograd.

No per-tile or per-Gaussian Python loop: every (Gaussian, pixel) pair inside a splat's footprint
is emitted at once, pairs too faint to count are dropped, the rest are sorted by pixel then
depth, and each pixel's transmittance before a splat is a segmented cumulative sum of
log(1 - alpha). The rules are 3DGS's (gsplat's classic mode): alpha = min(0.999, o·exp(-power)),
splats under 1/255 skipped, a pixel stops at the splat that would bring its transmittance to
1e-4 or below, and the background shows through what is left.
"""

from __future__ import annotations

import torch

from .projection import Splats

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4


def splat_alpha(offsets: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, counts) of splats at pixel-centre offsets (..., 2) from their means; a splat
    counts where its Gaussian's exponent is not negative and alpha reaches ALPHA_MIN."""
    dx, dy = offsets.unbind(-1)
    a, b, c = conics.unbind(-1)
    power = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(opacities * torch.exp(-power), max=ALPHA_MAX)
    return alpha, (power >= 0) & (alpha >= ALPHA_MIN)


def composite(splats: Splats, colors: torch.Tensor, width: int, height: int,
              backgrounds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, H, W, C) and alphas (B, H, W, 1) of splats with colours (B, N, C) of any
    channel count; ``backgrounds`` (B, C) shows through (default black)."""
    batch, _, channels = colors.shape
    pixels = batch * height * width
    gaussian, pixel = _footprint_pairs(splats, width, height)
    b, n = gaussian // colors.shape[1], gaussian % colors.shape[1]
    offsets = torch.stack([pixel % width, (pixel // width) % height], -1) + 0.5
    with torch.no_grad():  # which pairs count, cheaply, before the differentiable pass
        _, counts = splat_alpha(offsets - splats.means2d[b, n], splats.conics[b, n],
                                splats.opacities[b, n])
    gaussian, pixel, offsets, b, n = (t[counts] for t in (gaussian, pixel, offsets, b, n))
    # Sort by pixel, then by depth (a global depth rank: pixels of different images never mix).
    rank = torch.empty_like(gaussian)
    order_by_depth = torch.argsort(splats.depths.detach().reshape(-1)[gaussian])
    rank[order_by_depth] = torch.arange(len(gaussian), device=gaussian.device)
    order = torch.argsort(pixel * max(len(gaussian), 1) + rank)
    pixel, b, n, offsets = pixel[order], b[order], n[order], offsets[order]
    alpha, _ = splat_alpha(offsets - splats.means2d[b, n], splats.conics[b, n],
                           splats.opacities[b, n])
    weight = alpha * _transmittance_before(alpha, pixel)
    image = torch.zeros(pixels, channels, dtype=colors.dtype, device=colors.device)
    image = image.index_add(0, pixel, weight[:, None].to(colors.dtype) * colors[b, n])
    coverage = torch.zeros(pixels, dtype=weight.dtype, device=weight.device)
    coverage = coverage.index_add(0, pixel, weight)
    if backgrounds is not None:
        pixel_image = torch.arange(pixels, device=colors.device) // (height * width)
        image = image + (1 - coverage)[:, None].to(colors.dtype) * backgrounds[pixel_image]
    return (image.reshape(batch, height, width, channels),
            coverage.reshape(batch, height, width, 1).to(colors.dtype))


def _footprint_pairs(splats: Splats, width: int, height: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat Gaussian index b*N + n, flat pixel index b*H*W + y*W + x) for every pixel whose
    centre lies within a splat's footprint box."""
    batch, count = splats.depths.shape
    radii = splats.radii.reshape(-1, 2)
    centre = splats.means2d.detach().reshape(-1, 2)
    low = torch.floor(centre - radii).to(torch.int64)
    high = torch.floor(centre + radii).to(torch.int64) + 1
    size = torch.tensor([width, height], device=low.device)
    low, high = low.clamp(min=0), torch.minimum(high, size)
    extent = (high - low).clamp(min=0) * (radii > 0).all(-1, keepdim=True)
    per_gaussian = extent[:, 0] * extent[:, 1]
    gaussian = torch.repeat_interleave(torch.arange(batch * count, device=low.device),
                                       per_gaussian)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = torch.arange(len(gaussian), device=low.device) - first[gaussian]
    x = low[gaussian, 0] + local % extent[gaussian, 0]
    y = low[gaussian, 1] + local // extent[gaussian, 0]
    image = gaussian // count
    return gaussian, (image * height + y) * width + x


def _transmittance_before(alpha: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
    """Per pair (sorted by pixel, then depth): the light left before it, zero from the pair
    that would leave TRANSMITTANCE_MIN or less on (that pixel is done)."""
    if len(alpha) == 0:
        return alpha
    log_left = torch.log1p(-alpha.double())
    running = torch.cumsum(log_left, 0)
    _, lengths = torch.unique_consecutive(pixel, return_counts=True)
    starts = torch.cumsum(lengths, 0) - lengths
    before_pixel = torch.repeat_interleave(running[starts] - log_left[starts], lengths)
    after = running - before_pixel
    before = torch.exp(after - log_left)
    done = torch.exp(after.detach()) <= TRANSMITTANCE_MIN
    return torch.where(done, torch.zeros_like(before), before).to(alpha.dtype)

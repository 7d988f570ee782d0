"""The brute-force definition the fast compositor is checked against: every splat evaluated at
every pixel, composited one splat at a time in depth order. Slow (N x H x W); for tests and
``backend bench renderer``'s speed-up figure only."""

from __future__ import annotations

import torch

from .composite import TRANSMITTANCE_MIN, splat_alpha
from .projection import Splats


def composite_reference(splats: Splats, colors: torch.Tensor, width: int, height: int,
                        backgrounds: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``composite.composite``."""
    batch, _, channels = colors.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=colors.dtype),
                            torch.arange(width, dtype=colors.dtype), indexing="ij")
    centres = torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5
    images, alphas = [], []
    for b in range(batch):
        image = torch.zeros(height * width, channels, dtype=colors.dtype)
        left = torch.ones(height * width, dtype=colors.dtype)
        done = torch.zeros(height * width, dtype=torch.bool)
        for n in torch.argsort(splats.depths[b].detach()).tolist():
            if (splats.radii[b, n] == 0).any():
                continue
            alpha, counts = splat_alpha(centres - splats.means2d[b, n], splats.conics[b, n],
                                        splats.opacities[b, n])
            after = left * (1 - alpha)
            # A pixel is done at the first splat that would leave too little light; that
            # splat is not added.
            done = done | (counts & (after <= TRANSMITTANCE_MIN))
            takes = counts & ~done
            image = image + torch.where(takes, alpha * left, 0)[:, None] * colors[b, n]
            left = torch.where(takes, after, left)
        if backgrounds is not None:
            image = image + left[:, None] * backgrounds[b]
        images.append(image.reshape(height, width, channels))
        alphas.append((1 - left).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)

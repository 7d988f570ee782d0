"""Keypoint heatmaps on the backbone's tokens: a dense 2D objective for training from scratch.

PEAR starts its ViT from ViTPose, a backbone already trained to draw keypoint heatmaps from its
tokens. Without such a file the regression alone teaches the backbone too slowly to find the
body: on 32 synthetic people composited onto fresh backgrounds, ViT and CNN backbones alike still
answered one pose after 300 steps, while with this head the same network began to tell them
apart after ~200 (docs/training.md). So, as ViTPose's simple decoder does, a linear layer turns
every token into heatmaps of the asset's joints at 1/4 of the crop's resolution, learned with
per-pixel binary cross-entropy against Gaussians; the head is dropped after training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSCALE = 4  # heatmap cells per token side: 16-pixel patches -> 4-pixel cells (ViTPose's 1/4)


class HeatmapHead(nn.Module):
    """(B, N, dim) tokens on a (rows, cols) grid -> (B, K, rows * 4, cols * 4) logits."""

    def __init__(self, dim: int, keypoints: int, grid: tuple[int, int]):
        super().__init__()
        self.keypoints, self.grid = keypoints, grid
        self.project = nn.Linear(dim, keypoints * UPSCALE * UPSCALE)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch = tokens.shape[0]
        cells = self.project(tokens).transpose(1, 2).reshape(
            batch, self.keypoints * UPSCALE * UPSCALE, *self.grid)
        return F.pixel_shuffle(cells, UPSCALE)


def heatmap_targets(keypoints: torch.Tensor, size: tuple[int, int], sigma: float
                    ) -> torch.Tensor:
    """Gaussians (peak 1, ``sigma`` in heatmap cells) at ``keypoints`` (B, K, 2+) in normalized
    crop units (``data/batch.py``: crop heights from the crop's centre) on a (rows, cols)
    heatmap covering the crop -> (B, K, rows, cols)."""
    centre = torch.tensor([size[1], size[0]], dtype=keypoints.dtype,
                          device=keypoints.device) / 2
    # A crop height is ``rows`` cells; cell j's centre sits at j + 0.5 from the crop's edge.
    at = keypoints[..., :2] * size[0] + centre - 0.5
    rows = torch.arange(size[0], dtype=at.dtype, device=at.device)
    cols = torch.arange(size[1], dtype=at.dtype, device=at.device)
    dy = (rows - at[..., 1:2]).square()[..., :, None]
    dx = (cols - at[..., 0:1]).square()[..., None, :]
    return torch.exp(-(dx + dy) / (2 * sigma**2))


def heatmap_loss(logits: torch.Tensor, keypoints: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per sample (B,): each keypoint's mean per-cell binary cross-entropy against its Gaussian,
    weighted by its confidence (0 = not labelled), summed over keypoints."""
    size = tuple(logits.shape[-2:])
    targets = heatmap_targets(keypoints, size, sigma)
    per_cell = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return (per_cell.mean((2, 3)) * keypoints[..., 2]).sum(1)

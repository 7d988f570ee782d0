"""A plain Vision Transformer backbone (pre-norm blocks, learned position embeddings) at the
PEAR input size: 256x192 crops in 16-pixel patches, 16x12 = 192 tokens. The patch size and
LayerScale are settable so DINOv2's backbones (patch 14, LayerScale) load into the same class
(the avatar's appearance encoder)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = (256, 192)  # height, width
PATCH = 16


@dataclass(frozen=True)
class ViTConfig:
    name: str
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    image: tuple[int, int] = INPUT_SIZE
    patch: int = PATCH
    layer_scale: bool = False  # DINOv2's per-channel residual scales (ls1, ls2)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches down and across (the image's last rows/columns that do not fill a patch are
        not seen, as a strided convolution does)."""
        return self.image[0] // self.patch, self.image[1] // self.patch


# The standard sizes (ViT-Ti/S/B/L/H, patch 16); PEAR's is ViT-B. ``vit_micro`` is no
# published size: two thin blocks, for smoke runs and tests of the training machinery.
CONFIGS = {
    "vit_micro": ViTConfig("vit_micro", 96, 2, 2),
    "vit_t": ViTConfig("vit_t", 192, 12, 3),
    "vit_s": ViTConfig("vit_s", 384, 12, 6),
    "vit_b": ViTConfig("vit_b", 768, 12, 12),
    "vit_l": ViTConfig("vit_l", 1024, 24, 16),
    "vit_h": ViTConfig("vit_h", 1280, 32, 16),
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, layer_scale: bool = False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """(B, 3, H, W) normalized images -> (B, gh * gw, dim) tokens (``config.grid``)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv2d(3, config.dim, config.patch, config.patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid[0] * config.grid[1],
                                                  config.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio,
                                          config.layer_scale) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.config.image:
            raise ValueError(f"{self.config.name} takes {self.config.image[0]}x"
                             f"{self.config.image[1]} crops, got {tuple(images.shape[-2:])}")
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

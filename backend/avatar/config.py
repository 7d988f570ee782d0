"""The avatar network's sizes (torch-free: training configs read it without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AvatarConfig:
    latent: int = 16  # colour channels per Gaussian; the first 3 are RGB
    features: int = 32  # the encoder's feature map
    identity: int = 128  # the global identity code
    vertex_features: int = 16  # learned per template Gaussian
    uv_size: int = 128  # the UV map's side (texels)
    width: int = 32  # the U-Nets' first width
    depth: int = 3  # the U-Nets' halvings

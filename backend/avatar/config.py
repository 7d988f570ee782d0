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
    # The appearance encoder: "unet" (from scratch), "vit" (the regressor's patch-16 ViT) or
    # "dinov2" (patch 14, LayerScale), of size encoder_vit; the ViT kinds start from
    # encoder_weights, a local file (DINOv2's .pth, a regressor checkpoint's weights, ...),
    # when training begins. A trained renderer carries its encoder: the file is not needed then.
    encoder: str = "unet"
    encoder_vit: str = "vit_s"
    encoder_weights: str = ""

"""The avatar's networks, small enough to train on a CPU and plain enough to scale: a U-Net
(the default appearance encoder's trunk, the UV inpainter and the refiner are all one), the
per-Gaussian MLP heads, and a ViT appearance encoder for pretrained backbones (GUAVA uses
DINOv2's; the regressor's own is another). docs/avatar.md says when to use which."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..regressor.vit import CONFIGS, INPUT_SIZE, ViT, ViTConfig

# The pixel statistics ViT backbones were trained with (ImageNet's: the regressor's, DINOv2's).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
ENCODERS = ("unet", "vit", "dinov2")


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.GroupNorm(8, outputs),
                         nn.SiLU(), nn.Conv2d(outputs, outputs, 3, padding=1),
                         nn.GroupNorm(8, outputs), nn.SiLU())


class UNet(nn.Module):
    """Encoder-decoder with skips; ``depth`` halvings (sizes must divide by 2**depth). An
    optional code (B, D) conditions the bottleneck (GUAVA's style code, here added)."""

    def __init__(self, inputs: int, outputs: int, width: int = 32, depth: int = 3,
                 code: int = 0):
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList([_block(inputs, widths[0])] + [
            _block(widths[level - 1], widths[level]) for level in range(1, depth + 1)])
        self.up = nn.ModuleList([_block(widths[level + 1] + widths[level], widths[level])
                                 for level in reversed(range(depth))])
        self.code = nn.Linear(code, widths[-1]) if code else None
        self.out = nn.Conv2d(widths[0], outputs, 1)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(x, code)[0]

    def run(self, x: torch.Tensor, code: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and the bottleneck's features."""
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else nn.functional.avg_pool2d(x, 2))
            skips.append(x)
        if self.code is not None:
            x = x + self.code(code)[:, :, None, None]
        bottleneck = x
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear",
                                          align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.out(x), bottleneck


class AppearanceEncoder(nn.Module):
    """The source image (B, 3, H, W) -> a feature map (B, F, H, W) and an identity code (B, D)
    (the pooled bottleneck)."""

    def __init__(self, features: int, identity: int, width: int = 32, depth: int = 3):
        super().__init__()
        self.unet = UNet(3, features, width, depth)
        self.identity = nn.Sequential(nn.Linear(width * 2**depth, identity), nn.SiLU(),
                                      nn.Linear(identity, identity))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, bottleneck = self.unet.run(image)
        return features, self.identity(bottleneck.mean((2, 3)))


def encoder_vit_config(kind: str, size: str) -> ViTConfig:
    """The ViT of a ``vit`` (the regressor's patch-16 backbone) or ``dinov2`` (patch 14,
    LayerScale) appearance encoder of ``size`` (a ``vit.CONFIGS`` name), at the avatar's
    256x192 crop."""
    if size not in CONFIGS:
        raise ValueError(f"unknown encoder ViT size {size!r}; choose from {list(CONFIGS)}")
    if kind == "dinov2":
        return dataclasses.replace(CONFIGS[size], patch=14, layer_scale=True)
    return dataclasses.replace(CONFIGS[size], image=INPUT_SIZE)


class ViTAppearanceEncoder(nn.Module):
    """The source image (B, 3, 256, 192) in [0, 1] -> a ViT's tokens, projected and upsampled
    to a feature map (B, F, H, W) that a convolution sharpens with the image itself (tokens
    see 14-16 px patches; Gaussians need finer colour), and an identity code from the mean
    token."""

    def __init__(self, config: ViTConfig, features: int, identity: int):
        super().__init__()
        self.vit = ViT(config)
        self.project = nn.Conv2d(config.dim, features, 1)
        self.sharpen = _block(features + 3, features)
        self.out = nn.Conv2d(features, features, 1)
        self.identity = nn.Sequential(nn.Linear(config.dim, identity), nn.SiLU(),
                                      nn.Linear(identity, identity))
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vit((image - self.mean) / self.std)
        grid = self.vit.config.grid
        maps = tokens.transpose(1, 2).reshape(image.shape[0], -1, *grid)
        maps = nn.functional.interpolate(self.project(maps), size=image.shape[-2:],
                                         mode="bilinear", align_corners=False)
        features = self.out(self.sharpen(torch.cat([maps, image], 1)))
        return features, self.identity(tokens.mean(1))


def appearance_encoder(kind: str, size: str, features: int, identity: int, width: int,
                       depth: int) -> nn.Module:
    if kind == "unet":
        return AppearanceEncoder(features, identity, width, depth)
    if kind in ("vit", "dinov2"):
        return ViTAppearanceEncoder(encoder_vit_config(kind, size), features, identity)
    raise ValueError(f"unknown appearance encoder {kind!r}; choose from {list(ENCODERS)}")


def mlp(inputs: int, hidden: int, outputs: int, layers: int = 2) -> nn.Sequential:
    parts: list[nn.Module] = []
    for index in range(layers):
        parts += [nn.Linear(inputs if index == 0 else hidden, hidden), nn.SiLU()]
    return nn.Sequential(*parts, nn.Linear(hidden, outputs))

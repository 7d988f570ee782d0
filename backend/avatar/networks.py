"""The avatar's convolutional parts, small enough to train on a CPU and plain enough to scale:
a U-Net (the appearance encoder's trunk, the UV inpainter and the refiner are all one) and the
per-Gaussian MLP heads. GUAVA uses a DINOv2 encoder and StyleGAN-style U-Nets; these are the
from-scratch default (docs/avatar.md)."""

from __future__ import annotations

import torch
from torch import nn


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


def mlp(inputs: int, hidden: int, outputs: int, layers: int = 2) -> nn.Sequential:
    parts: list[nn.Module] = []
    for index in range(layers):
        parts += [nn.Linear(inputs if index == 0 else hidden, hidden), nn.SiLU()]
    return nn.Sequential(*parts, nn.Linear(hidden, outputs))

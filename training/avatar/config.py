"""``pear-train renderer``'s configuration schema (torch-free, like stage 1's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from backend.avatar.config import AvatarConfig
from backend.conventions import DEFAULT_ASSET_ID

from ..config import OptimConfig, RunConfig


@dataclass
class AvatarDataConfig:
    asset: str = DEFAULT_ASSET_ID
    train: list[str] = field(default_factory=list)  # folders made by `pear-train synth --pairs`
    val: list[str] = field(default_factory=list)
    workers: int = 0  # loader processes per training process


@dataclass
class AvatarLossConfig:
    """GUAVA's losses: L1 + perceptual on the refined and the raw splat image, the same on
    face and hand crops, and limits on how far Gaussians leave the surface and how big they
    grow (triangle units)."""

    l1: float = 1.0
    perceptual: float = 0.05  # GUAVA's LPIPS weight late in training
    # A local LPIPS AlexNet file (the `lpips` package, which needs torchvision); "" = SSIM
    # stands in for LPIPS (never reported as LPIPS).
    lpips_weights: str = ""
    face: float = 0.25
    hands: float = 0.1
    crop_size: int = 64  # face and hand crops are resampled to this before their loss
    position: float = 0.01
    position_limit: float = 3.0
    scale: float = 1.0
    scale_limit: float = 1.0


@dataclass
class RendererTrainConfig:
    model: AvatarConfig = field(default_factory=AvatarConfig)
    data: AvatarDataConfig = field(default_factory=AvatarDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        batch_size=4, steps=200_000, lr=1e-4, reference_batch=4, weight_decay=0.0,
        adam_betas=[0.0, 0.99], warmup_steps=100))
    loss: AvatarLossConfig = field(default_factory=AvatarLossConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/renderer"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

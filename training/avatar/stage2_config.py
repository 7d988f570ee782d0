"""``pear-train stage2``'s configuration schema (torch-free)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import LossConfig, OptimConfig, RunConfig
from .config import AvatarDataConfig, AvatarLossConfig


@dataclass
class JointConfig:
    stage1_checkpoint: str = ""  # the regressor to start from (a stage-1 run's checkpoint)
    renderer_checkpoint: str = ""  # a trained renderer (`pear-train renderer`)
    stage1_weight: float = 1.0  # the stage-1 losses stay on at this weight (PEAR keeps them)
    train_renderer: bool = True  # PEAR trains regressor and renderer together


@dataclass
class Stage2Config:
    joint: JointConfig = field(default_factory=JointConfig)
    data: AvatarDataConfig = field(default_factory=AvatarDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        batch_size=2, steps=1000, lr=1e-5, reference_batch=2, warmup_steps=50))
    loss: LossConfig = field(default_factory=LossConfig)  # stage 1's terms
    photometric: AvatarLossConfig = field(default_factory=AvatarLossConfig)  # Eq. 7
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/stage2"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

"""The PEAR network: ViT backbone + decoder head -> one output vector per crop, laid out by
the asset's parameter spec (``layout``). A plain tensor out, so it exports to ONNX as is."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .head import DecoderHead
from .layout import ParamLayout
from .vit import CONFIGS, ViT


@dataclass(frozen=True)
class RegressorConfig:
    backbone: str = "vit_b"  # PEAR's; see vit.CONFIGS
    head_dim: int = 512
    head_depth: int = 6
    head_heads: int = 8
    iterations: int = 1  # >1: iterative refinement, the estimate fed back into the query

    def __post_init__(self) -> None:
        if self.backbone not in CONFIGS:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {list(CONFIGS)}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RegressorConfig:
        return cls(**data)


class PearRegressor(nn.Module):
    def __init__(self, config: RegressorConfig, layout: ParamLayout):
        super().__init__()
        self.config, self.layout = config, layout
        self.backbone = ViT(CONFIGS[config.backbone])
        self.head = DecoderHead(self.backbone.config.dim, layout.mean(), config.head_dim,
                                config.head_depth, config.head_heads, config.iterations)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 192) normalized crops -> (B, layout.size): parameters, then the crop
        camera (s, tx, ty)."""
        return self.head(self.backbone(images))

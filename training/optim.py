"""The optimizer and its schedule: AdamW, linear warm-up, cosine decay; the learning rate
scales linearly with the global batch against the config's reference batch."""

from __future__ import annotations

import math

import torch

from .config import OptimConfig


def scaled_lr(config: OptimConfig, world_size: int) -> float:
    """``lr`` is set for ``reference_batch`` samples per step; the run's global batch is
    ``batch_size`` per process times the processes."""
    return config.lr * config.batch_size * world_size / config.reference_batch


def lr_factor(step: int, config: OptimConfig) -> float:
    """The multiplier of the peak learning rate at ``step``: linear warm-up, then a cosine down
    to ``final_lr_fraction`` at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.final_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, config: OptimConfig, world_size: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without weight decay on biases, norms and embeddings (1-D tensors and position
    tables), as ViT training does, and the warm-up + cosine schedule."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = parameter.ndim <= 1 or name.endswith("pos_embed")
        (no_decay if plain else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=scaled_lr(config, world_size),
        betas=tuple(config.adam_betas))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    return optimizer, schedule

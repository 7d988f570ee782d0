"""HMR2-style head: one query token cross-attends to the image tokens through a transformer
decoder and regresses a correction to the mean output; optionally repeated with the estimate
fed back (iterative refinement)."""

from __future__ import annotations

import torch
from torch import nn


class DecoderHead(nn.Module):
    def __init__(self, context_dim: int, mean: torch.Tensor, dim: int = 512, depth: int = 6,
                 heads: int = 8, iterations: int = 1):
        super().__init__()
        size = mean.numel()
        self.iterations = iterations
        self.register_buffer("mean", mean.clone().float())
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.feedback = nn.Linear(size, dim)
        self.context = nn.Linear(context_dim, dim)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                       norm_first=True) for _ in range(depth))
        self.out = nn.Linear(dim, size)
        # Small, not zero: the output starts at the mean and gradients still reach the
        # backbone from the first step.
        nn.init.xavier_uniform_(self.out.weight, gain=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, context_dim) image tokens -> (B, size) output vector."""
        context = self.context(tokens)
        estimate = self.mean.expand(tokens.shape[0], -1)
        for _ in range(self.iterations):
            query = self.query + self.feedback(estimate)[:, None]
            for layer in self.layers:
                query = layer(query, context)
            estimate = estimate + self.out(query[:, 0])
        return estimate

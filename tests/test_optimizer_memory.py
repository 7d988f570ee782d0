"""Adam's moments carried between fits that continue each other (the online tracker's frames)."""

from __future__ import annotations

import torch

from backend.tracking.optimizer_memory import OptimizerMemory

LR = 0.02


def _descend(start: torch.Tensor, steps: int, memory: OptimizerMemory | None) -> torch.Tensor:
    """``steps`` Adam steps on a quadratic bowl at 0 from ``start``; returns where they end."""
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=LR)
    if memory is not None:
        memory.restore("stage", optimizer, {"x": x})
    for _ in range(steps):
        optimizer.zero_grad()
        (x.square().sum() * 0.5).backward()
        optimizer.step()
    if memory is not None:
        memory.keep("stage", optimizer, {"x": x})
    return x.detach()


def test_a_fit_continuing_the_last_one_does_not_kick_a_parameter_already_at_rest():
    memory = OptimizerMemory()
    # After these steps the first parameter has arrived, the second is still on its way.
    before = _descend(torch.tensor([0.3, 3.0]), 199, None)
    settled = _descend(torch.tensor([0.3, 3.0]), 200, memory)
    pace = float(before[1] - settled[1])
    assert abs(float(settled[0])) < 1e-4 and 0.1 * LR < pace < 0.5 * LR
    # A fresh optimizer's first step moves both by the full step size, whatever the gradient.
    fresh = _descend(settled, 1, None) - settled
    assert torch.all(fresh.abs() > 0.9 * LR)
    # Continuing the last fit's moments, the first stays put and the second keeps its pace.
    continued = _descend(settled, 1, memory) - settled
    assert abs(float(continued[0])) < 0.01 * LR
    assert 0.8 * pace < -float(continued[1]) < 1.2 * pace


def test_a_parameter_whose_shape_changed_starts_afresh():
    memory = OptimizerMemory()
    _descend(torch.ones(3), 5, memory)
    y = torch.ones(4, requires_grad=True)
    optimizer = torch.optim.Adam([y], lr=LR)
    memory.restore("stage", optimizer, {"x": y})
    assert y not in optimizer.state or not optimizer.state[y]
    # Another stage's state is its own.
    optimizer = torch.optim.Adam([y], lr=LR)
    memory.restore("other stage", optimizer, {"x": torch.ones(3)})
    assert not optimizer.state

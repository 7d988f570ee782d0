"""Adam's running moments carried from one fit to the next, for fits that continue each other
(the online tracker's frame after frame).

A fresh Adam's first steps move every parameter by the full step size whatever its gradient
(its moments start at zero, and bias correction makes the first step a sign), so a live frame
fitted in a dozen steps from the last frame's answer spent them undoing that kick: on a
synthetic clip the online fit settled at 49 mm PA-MPJPE where the same steps continuing the
last frame's moments give 41 (docs/live.md). Pure torch, no I/O.
"""

from __future__ import annotations

import torch


class OptimizerMemory:
    """Per stage and parameter name, the optimizer state its last fit ended with."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], dict[str, torch.Tensor]] = {}

    def restore(self, stage: str, optimizer: torch.optim.Optimizer,
                parameters: dict[str, torch.Tensor]) -> None:
        """Give ``optimizer`` the state each of ``parameters`` (name -> tensor it optimises)
        had at the end of the last fit's ``stage``, where the shapes still match."""
        for name, tensor in parameters.items():
            saved = self._states.get((stage, name))
            if saved is not None and saved["exp_avg"].shape == tensor.shape:
                optimizer.state[tensor] = {key: value.clone() for key, value in saved.items()}

    def keep(self, stage: str, optimizer: torch.optim.Optimizer,
             parameters: dict[str, torch.Tensor]) -> None:
        """Remember the state ``optimizer`` ended ``stage`` with, per name of ``parameters``."""
        for name, tensor in parameters.items():
            state = optimizer.state.get(tensor)
            if state:
                self._states[(stage, name)] = {key: value.detach().clone()
                                               for key, value in state.items()}

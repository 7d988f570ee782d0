"""Many processes, one training run, through ``torchrun`` (the launcher PyTorch ships: no
launcher of our own). Each process reads its rank from the environment torchrun sets; NCCL on
CUDA, gloo on the CPU. Run alone (no torchrun) it is a world of one and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 alone logs and writes checkpoints."""
        return self.rank == 0


def join() -> World:
    """This process's place in the run (``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank, size, local_rank, device)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a tensor over all processes (itself in a world of one)."""
    if world.size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world.size


def mean_values_over_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """Each named number's mean over all processes (one collective; every rank must call it
    with the same names)."""
    if world.size == 1 or not values:
        return values
    names = sorted(values)
    means = mean_over_ranks(torch.tensor([values[n] for n in names], dtype=torch.float64,
                                         device=world.device), world)
    return dict(zip(names, means.tolist(), strict=True))


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()

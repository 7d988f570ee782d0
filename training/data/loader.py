"""Batches in a fixed order that depends only on the run's seed and the step: step k on rank r
takes the r-th slice of the k-th global batch, each epoch a fresh permutation. So a resumed run
sees what it would have seen, N processes with batch B/N see what one process with batch B
sees, and loader workers change nothing (each sample's augmentation is seeded by its epoch and
index, not by the worker)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from backend.body.asset import Asset

from ..errors import TrainingDataError
from ..forward import JOINTS
from .batch import Batch, Sample, collate


class SampleSource(Protocol):
    """Random access to a data set's raw samples (RGBA or RGB crops and their labels)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


# Compositing and augmentation of one raw sample with its own random generator.
Prepare = Callable[[Sample, np.random.Generator], Sample]


class RunOrder(Sampler[int]):
    """Keys ``epoch * len(source) + index`` for this rank, from ``start_step`` to ``steps``."""

    def __init__(self, count: int, batch_size: int, world_size: int, rank: int, seed: int,
                 start_step: int, steps: int):
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self.world_size, self.rank = world_size, rank
        self.start_step, self.steps = start_step, steps
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.batch_size

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch])
                                  .permutation(self.count)}
        return self._permutations[epoch]

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.steps):
            first = (step * self.world_size + self.rank) * self.batch_size
            for position in range(first, first + self.batch_size):
                epoch, at = divmod(position, self.count)
                yield epoch * self.count + int(self._permutation(epoch)[at])


class PreparedSamples(Dataset):
    """A source's samples, each prepared with a generator seeded by (seed, epoch, index)."""

    def __init__(self, source: SampleSource, prepare: Prepare | None, seed: int):
        self.source, self.prepare, self.seed = source, prepare, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int) -> Sample:
        epoch, index = divmod(key, len(self.source))
        sample = self.source[index]
        if self.prepare is None:
            return sample
        return self.prepare(sample, np.random.default_rng([self.seed, epoch, index]))


def keypoint_sizes(asset: Asset) -> dict[str, int]:
    """Every 2D keypoint set the losses can use for an asset: its joints and landmark sets."""
    return {JOINTS: len(asset.joint_names),
            **{name: len(points) for name, points in asset.landmarks.items()}}


def batches(source: SampleSource, asset: Asset, batch_size: int, seed: int, start_step: int,
            steps: int, world_size: int = 1, rank: int = 0, prepare: Prepare | None = None,
            workers: int = 0) -> Iterator[Batch]:
    """The run's batches for this rank from ``start_step`` on."""
    return ordered_batches(source, batch_size, seed, start_step, steps,
                           partial(collate, spec=asset.param_spec,
                                   num_joints=len(asset.joint_names),
                                   keypoint_sizes=keypoint_sizes(asset)),
                           world_size, rank, prepare, workers)


def ordered_batches(source, batch_size: int, seed: int, start_step: int, steps: int,
                    collate_fn: Callable, world_size: int = 1, rank: int = 0,
                    prepare: Prepare | None = None, workers: int = 0) -> Iterator:
    """Batches of any random-access source (``len`` and ``[index]``) in the run's order,
    collated by ``collate_fn``."""
    if len(source) == 0:
        raise TrainingDataError("the training data holds no samples: point data.train at "
                                "folders made by `pear-train synth` (or another source)")
    order = RunOrder(len(source), batch_size, world_size, rank, seed, start_step, steps)
    loader = DataLoader(PreparedSamples(source, prepare, seed), batch_size=batch_size,
                        sampler=order, num_workers=workers, collate_fn=collate_fn,
                        persistent_workers=workers > 0,
                        worker_init_fn=_start_worker if workers > 0 else None)
    return iter(loader)


def _start_worker(_: int) -> None:
    # Workers decode and warp images; the training process keeps the cores for the network.
    torch.set_num_threads(1)
    # A scheduler's SIGTERM or a terminal's Ctrl-C reaches the whole process group: the
    # training process alone decides when to stop (after a checkpoint) and then ends its
    # workers; a worker dying first would crash it before that checkpoint.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

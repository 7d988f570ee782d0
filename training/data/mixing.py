"""Several sample sources as one, drawn by weight (HMR2-style mixture weights): position i of
the mixture belongs to source k with probability ``weight_k``, decided by a seeded generator,
and takes that source's next sample in a seeded permutation of it. The map from i to
(source, index) is fixed by the seed, so the trainer's data order stays step-determined
(``loader.RunOrder`` permutes the mixture's positions like any source's)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import TrainingDataError
from .batch import Sample
from .loader import SampleSource


class MixedSource:
    """``length`` positions (default: the sources' total size) drawn from ``sources`` with
    ``weights`` (normalized; a source of weight 0 is never drawn)."""

    def __init__(self, sources: Sequence[SampleSource], weights: Sequence[float], seed: int = 0,
                 length: int | None = None):
        if len(sources) != len(weights) or not sources:
            raise TrainingDataError(f"mixing needs one weight per source: {len(sources)} "
                                    f"source(s), {len(weights)} weight(s)")
        weights = np.asarray(weights, np.float64)
        sizes = np.array([len(source) for source in sources])
        if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise TrainingDataError(f"mixture weights must be >= 0 and not all 0: "
                                    f"{weights.tolist()}")
        empty = [k for k in range(len(sources)) if sizes[k] == 0 and weights[k] > 0]
        if empty:
            raise TrainingDataError(f"source(s) {empty} of the mixture hold no samples but "
                                    "have a weight: fix their paths or give them weight 0")
        self.sources = list(sources)
        rng = np.random.default_rng([seed, 0x6d6978])
        count = int(sizes.sum()) if length is None else length
        self.choice = rng.choice(len(sources), size=count, p=weights / weights.sum())
        self.index = np.zeros(count, np.int64)
        for k, size in enumerate(sizes):
            where = np.flatnonzero(self.choice == k)
            if len(where):  # the k-th source's samples in a seeded order, cycled
                order = rng.permutation(size)
                self.index[where] = order[np.arange(len(where)) % size]

    def __len__(self) -> int:
        return len(self.choice)

    def locate(self, index: int) -> tuple[int, int]:
        """Position ``index`` as (source number, index in that source)."""
        return int(self.choice[index]), int(self.index[index])

    def __getitem__(self, index: int) -> Sample:
        source, inner = self.locate(index)
        return self.sources[source][inner]

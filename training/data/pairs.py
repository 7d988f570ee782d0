"""Avatar training pairs: one synthetic person (shape, face shape and look) in two poses,
expressions and shots, rendered with exact bodies. The avatar is built from the first (the
source) and must reproduce the second (the target), as GUAVA trains on two frames of a clip.

Pairs are stored in the synth shard format (``pear-train synth --pairs``): records 2i and
2i + 1 are pair i's source and target, and the manifest says ``pairs``. The source faces the
camera more (up to ``SOURCE_FACING`` degrees away) than the target, whose view is the
synth's ``facing``: an avatar is built from a view that shows the person.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from backend.body.asset import Asset
from backend.camera import to_camera
from backend.conventions import PERSON_PARAMS

from .appearance import sample_appearance
from .shards import ShardError, ShardSamples, SynthRecord, as_folders, read_manifest
from .synth import SPLITS, PoseSource, SynthGenerator, sample_params, sample_shot

SOURCE_FACING = 45.0


def pair_rng(seed: int, split: str, pair: int) -> np.random.Generator:
    """Pair ``pair``'s own generator (apart from the single samples' of the same seed)."""
    return np.random.default_rng([seed, SPLITS.index(split), pair, 1])


class PairGenerator:
    """Record ``index`` of a pairs run: ``generator(index)`` (pair index // 2, source when
    even, target when odd). The pair last made is kept, so its second record costs nothing."""

    def __init__(self, asset: Asset, poses: PoseSource, seed: int, split: str,
                 facing: float = 180.0):
        self.synth = SynthGenerator(asset, poses, seed, split, facing)
        self._last: tuple[int, tuple[SynthRecord, SynthRecord]] | None = None

    def __call__(self, index: int) -> SynthRecord:
        pair = index // 2
        if self._last is None or self._last[0] != pair:
            self._last = pair, self.pair(pair)
        return self._last[1][index % 2]

    def pair(self, pair: int) -> tuple[SynthRecord, SynthRecord]:
        synth = self.synth
        rng = pair_rng(synth.seed, synth.split, pair)
        appearance = sample_appearance(synth.regions, rng)
        records: list[SynthRecord] = []
        identity: dict[str, np.ndarray] = {}
        for record, facing in enumerate((min(SOURCE_FACING, synth.facing), synth.facing)):
            params, source = sample_params(synth.model, synth.poses, rng, facing)
            identity = identity or {k: params[k] for k in PERSON_PARAMS if k in params}
            params.update(identity)
            output = synth.pose(params)
            origin = torch.zeros(1, 3, dtype=torch.float64)
            shot = sample_shot(to_camera(output.vertices, origin)[0].numpy(), rng)
            records.append(synth.render(2 * pair + record, params, output, shot, appearance,
                                        source))
        return records[0], records[1]


class ShardPairs:
    """(source, target) records of pairs folders made by ``pear-train synth --pairs``."""

    def __init__(self, folders: str | Path | Sequence[str | Path]):
        folders = as_folders(folders)
        for folder in folders:
            if not read_manifest(folder).pairs:
                raise ShardError(f"{folder} holds single samples, not pairs: make avatar "
                                 "training data with `pear-train synth --pairs`")
        self._records = ShardSamples(folders)

    def __len__(self) -> int:
        return len(self._records) // 2

    def __getitem__(self, pair: int) -> tuple[SynthRecord, SynthRecord]:
        return self._records.record(2 * pair), self._records.record(2 * pair + 1)

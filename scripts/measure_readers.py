#!/usr/bin/env python3
"""Read the small real dataset samples in ../shared/data/real with the standard-dataset
readers and report, per source, the samples found and the labels present (keypoints per set,
parameters), then one mixed batch through the trainer's loader.

    PEAR_HOME=... python scripts/measure_readers.py [--real ../shared/data/real] [--asset open]

The numbers in docs/training.md ("Standard datasets") come from this script.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from backend.body.registry import load
from training.data.loader import batches
from training.data.sources import open_entry, open_sources

REPO = Path(__file__).resolve().parents[1]


def entries(real: Path) -> list[str]:
    return [f"coco-wholebody:{real}/mmpose/tests/data/coco/test_coco_wholebody.json",
            f"mmhuman3d:{real}/mmhuman3d/tests/data/preprocessed_datasets/sample_3dpw_train.npz"
            f":{real}/mmhuman3d/tests/data/datasets/3dpw",
            f"mmhuman3d:{real}/mmpose/tests/data/h36m/test_h36m.npz"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real")
    parser.add_argument("--asset", default="open")
    args = parser.parse_args()
    asset = load(args.asset)
    print(f"asset {asset.asset_id} (kind {asset.meta['kind']})")
    for entry in entries(args.real):
        source = open_entry(entry, asset)
        points, people, params = Counter(), Counter(), Counter()
        for index in range(len(source)):
            sample = source[index]
            for name, values in sample.keypoints2d.items():
                points[name] += int((values[:, 2] > 0).sum())
                people[name] += 1
            params.update(sample.params)
        labels = ", ".join(f"{name}: {people[name]} people, {points[name]} points"
                           for name in sorted(points)) or "no keypoints"
        print(f"{entry.split(':')[0]} {Path(entry.split(':')[1]).name}: {len(source)} samples; "
              f"{labels}; params {dict(params) or 'none'}")
    mixed = open_sources(entries(args.real), {"coco-wholebody": 0.5, "mmhuman3d": 0.5}, asset)
    batch = next(batches(mixed, asset, 8, seed=0, start_step=0, steps=1))
    print(f"one mixed batch of 8: {sorted(batch.ids)}; has_joints3d {batch.has_joints3d.sum():.0f}")


if __name__ == "__main__":
    main()

"""``pear-train bench``: the training pipeline's throughput, stage by stage, in one run on this
machine: rendering synthetic samples, the loader (shard reads, compositing, augmentation,
collation), the network's training step (ViT-S and ViT-B, batch 8, on this process's
device), two processes over one under ``torchrun`` (gloo) at the same global batch, and the
trainer's own overhead (``RunSummary.overhead_fraction``, the goal is <= 0.1).

Every measurement is a few steps after a warm-up, so the whole bench stays within minutes on
two CPU cores; the numbers are rates, not the steady state of a long run.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from backend.body.asset import Asset

from .config import CONFIG_DIR, TrainConfig, load_config
from .data.shards import Manifest, ShardSamples, SynthRecord, write_shards

SYNTH_SAMPLES = 4  # timed renders, after one warm-up render
LOADER_BATCHES = 4
TRAIN_BATCH = 8
TRAIN_STEPS = 2  # timed steps per backbone, after one warm-up step
DDP_STEPS = 8  # per run of the two-process comparison (global batch TRAIN_BATCH)
DDP_SKIP = 2  # logged steps left out of its rate (start-up: processes, first batches)
OVERHEAD_STEPS = 4  # of the short train() run whose overhead is reported
SMOKE = CONFIG_DIR / "smoke.toml"


def timed_rate(work: Callable[[], int], repeats: int, warmup: int = 1) -> float:
    """Items per second of ``work()`` (it returns how many items it did) over ``repeats``
    calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        work()
    start, items = time.perf_counter(), 0
    for _ in range(repeats):
        items += work()
    return items / (time.perf_counter() - start)


def bench_synth(asset: Asset) -> tuple[float, list[SynthRecord]]:
    """Synthetic samples per second (render and labels, one thread as ``synth`` workers
    run), and the samples rendered."""
    from backend.body.model import BodyModel
    from backend.mocap.poses import pose_source

    from .data.synth import SynthGenerator

    generate = SynthGenerator(asset, pose_source(BodyModel(asset).double()), 0, "train")
    records: list[SynthRecord] = []

    def one() -> int:
        records.append(generate(len(records)))
        return 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return timed_rate(one, SYNTH_SAMPLES), records
    finally:
        torch.set_num_threads(threads)


def write_bench_shards(folder: Path, asset: Asset, records: list[SynthRecord]) -> Path:
    manifest = Manifest(asset.asset_id, asset.spec_hash, 0, "train", len(records), 2,
                        "ranges", 0)
    write_shards(folder, manifest, lambda: records.__getitem__)
    return folder


def bench_loader(asset: Asset, shards: Path) -> float:
    """Training images per second through the trainer's loader in this process: shard reads,
    compositing onto procedural backgrounds, augmentation, collation."""
    from .data.augment import Augmenter
    from .data.loader import batches

    stream = batches(ShardSamples(shards), asset, TRAIN_BATCH, 0, 0, LOADER_BATCHES + 1,
                     prepare=Augmenter(asset))
    return timed_rate(lambda: len(next(stream)), LOADER_BATCHES)


def bench_train_step(asset: Asset, shards: Path, backbone: str, adapted: bool = False
                     ) -> float:
    """Images per second of the training step (forward, ``predict``, ``compute_loss``,
    backward, clipping, AdamW) of the real PearRegressor with ``backbone`` at batch 8;
    ``adapted``: of its adapters alone, the network frozen (``pear-train adapt``)."""
    from backend.body.landmark_model import LandmarkModel
    from backend.body.model import BodyModel
    from backend.regressor.adapters import AdaptedRegressor

    from .data.augment import Augmenter
    from .data.loader import batches, keypoint_sizes
    from .forward import JOINTS, predict
    from .losses import compute_loss
    from .optim import build_optimizer
    from .stage1 import build_network

    config = load_config(None, [f"model.backbone='{backbone}'"])
    network = build_network(config, asset)
    trained = network
    if adapted:
        network = AdaptedRegressor(network, LandmarkModel(BodyModel(asset), sets=[]),
                                   asset.joint_names)
        trained = network.adapter
    sets = [name for name in keypoint_sizes(asset) if name in config.loss.kp2d_sets]
    body = LandmarkModel(BodyModel(asset), [name for name in sets if name != JOINTS])
    optimizer, schedule = build_optimizer(trained, config.optim, 1)
    batch = next(batches(ShardSamples(shards), asset, TRAIN_BATCH, 0, 0, 1,
                         prepare=Augmenter(asset)))

    def step() -> int:
        losses = compute_loss(predict(network(batch.images), batch, network.layout, body,
                                      sets), batch, config.loss)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.optim.grad_clip)
        optimizer.step()
        schedule.step()
        return len(batch)

    return timed_rate(step, TRAIN_STEPS)


def _logged_rate(run: Path) -> float:
    """The mean images/s of a run's logged steps after the first DDP_SKIP."""
    with open(run / "log.csv", newline="") as handle:
        rates = [float(row["img_s"]) for row in csv.DictReader(handle)
                 if row.get("img_s") and int(row["step"]) > DDP_SKIP]
    return sum(rates) / len(rates)


def _stage1_command(shards: Path, out: Path, batch: int) -> list[str]:
    return ["-m", "training.cli", "stage1", "--config", str(SMOKE),
            "--set", f"data.train=['{shards}']", "--set", f"run.out='{out}'",
            "--set", f"optim.steps={DDP_STEPS}", "--set", f"optim.batch_size={batch}",
            "--set", "run.log_every=1", "--set", f"run.checkpoint_every={DDP_STEPS}"]


def bench_ddp(shards: Path, folder: Path) -> float:
    """Global images/s of ``torchrun`` with 2 gloo processes over one process, the same
    global batch (each run's log.csv, start-up steps left out). Every process gets one
    thread, as torchrun gives its processes, so the ratio is what a second core adds (2.0 at
    best); a lone process on two threads swings several-fold on a busy machine."""
    one, two = folder / "one", folder / "two"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True,
             "env": {**os.environ, "OMP_NUM_THREADS": "1"}}
    subprocess.run([sys.executable, *_stage1_command(shards, one, TRAIN_BATCH)], **quiet)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2",
                    *_stage1_command(shards, two, TRAIN_BATCH // 2)], **quiet)
    return _logged_rate(two) / _logged_rate(one)


def bench_overhead(shards: Path, folder: Path) -> float:
    """The trainer's share of a short real ``train()`` run (ViT-S, batch 8): all but the
    forward, backward and optimizer step."""
    from backend.body import registry

    from .data.augment import Augmenter
    from .stage1 import train

    config: TrainConfig = load_config(None, [
        "model.backbone='vit_s'", f"optim.batch_size={TRAIN_BATCH}",
        f"optim.steps={OVERHEAD_STEPS}", f"run.out='{folder / 'overhead'}'",
        f"run.checkpoint_every={10 * OVERHEAD_STEPS}"])
    asset = registry.load(config.data.asset)
    summary = train(config, asset, ShardSamples(shards), Augmenter(asset))
    return summary.overhead_fraction


def run_bench(asset: Asset, progress: Callable[[str], None] = lambda text: None
              ) -> dict[str, float]:
    """Every measurement, in one run; rates in items per second."""
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pear-bench-") as temporary:
        folder = Path(temporary)
        progress("rendering synthetic samples")
        result["synth_samples_s"], records = bench_synth(asset)
        shards = write_bench_shards(folder / "shards", asset, records)
        progress("loader")
        result["loader_img_s"] = bench_loader(asset, shards)
        for backbone in ("vit_s", "vit_b"):
            progress(f"training step, {backbone}")
            result[f"train_img_s_{backbone}"] = bench_train_step(asset, shards, backbone)
        progress("adapter training step, vit_s")
        result["adapt_img_s"] = bench_train_step(asset, shards, "vit_s", adapted=True)
        progress("one process, then two under torchrun")
        result["ddp2_vs_1_ratio"] = bench_ddp(shards, folder)
        progress("trainer overhead")
        result["trainer_overhead_frac"] = bench_overhead(shards, folder)
    return {name: round(value, 4) for name, value in result.items()}

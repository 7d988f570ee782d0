"""PEAR stage 2 (§3.3, Eq. 5-7): the regressor and the Gaussian renderer trained together on
frame pairs. For a pair (source I_s, target I_t) the regressor reads both images; the avatar is
built from I_s with the source's predicted body and rendered with the target's predicted
pose, expression and camera on the source's predicted shape (Eq. 6); the rendering is compared
with I_t (Eq. 7: L1 + perceptual, GUAVA's crops and regularisers), and stage 1's losses stay on
both images. Gradients reach the regressor through both bodies.

The run machinery is stage 1's (run order, DDP, checkpoints and --resume, logs). The checkpoint
folder holds the regressor in the backend's format (``backend fit --estimator regressor
--checkpoint RUN/checkpoint`` and ``pear-train eval`` load it as it is) and the renderer in
``RUN/checkpoint/renderer``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from backend.avatar.checkpoint import load_avatar, save_avatar
from backend.avatar.model import GaussianAvatar
from backend.body.asset import Asset
from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.conventions import PERSON_PARAMS
from backend.regressor.checkpoint import load_checkpoint, save_checkpoint
from backend.regressor.model import PearRegressor

from .. import distributed
from ..checkpointing import latest_checkpoint, restore_run, save_run_checkpoint
from ..data.augment import AugmentConfig, Augmenter
from ..data.batch import Batch, collate
from ..data.loader import keypoint_sizes, ordered_batches
from ..data.shards import SynthRecord
from ..errors import TrainingDataError
from ..forward import JOINTS, Prediction, predict
from ..losses import compute_loss
from ..optim import build_optimizer
from ..run_loop import RunLoop, RunSummary
from .batch import PairBatch, collate_pairs
from .losses import avatar_loss, perceptual_loss
from .stage2_config import Stage2Config
from .train import diverged

RENDERER = "renderer"  # the renderer's folder inside a stage-2 checkpoint


@dataclass
class Stage2Batch:
    pairs: PairBatch  # both images on black, the cameras, the target's part boxes
    source: Batch  # the regressor's view of each source (composited, normalized) and labels
    target: Batch

    def __len__(self) -> int:
        return len(self.pairs)

    def to(self, device) -> Stage2Batch:
        return Stage2Batch(self.pairs.to(device), self.source.to(device),
                           self.target.to(device))


class JointModules(nn.Module):
    """What stage 2 trains: the regressor and the renderer; one forward for DDP."""

    def __init__(self, regressor: PearRegressor, avatar: GaussianAvatar, body: BodyModel,
                 keypoint_body: LandmarkModel, keypoint_sets: list[str]):
        super().__init__()
        self.regressor, self.avatar = regressor, avatar
        self.body, self.keypoint_body, self.keypoint_sets = body, keypoint_body, keypoint_sets

    def forward(self, batch: Stage2Batch):
        layout = self.regressor.layout
        source = predict(self.regressor(batch.source.images), batch.source, layout,
                         self.keypoint_body, self.keypoint_sets)
        target = predict(self.regressor(batch.target.images), batch.target, layout,
                         self.keypoint_body, self.keypoint_sets)
        source_vertices = self._vertices(source.params, source.cam_t)
        # Eq. 6: the target's pose, expression and camera on the source's shape.
        shape = {name: source.params[name] for name in PERSON_PARAMS if name in source.params}
        target_vertices = self._vertices({**target.params, **shape}, target.cam_t)
        rendering, gaussians = self.avatar(batch.pairs.source.image, source_vertices,
                                           batch.pairs.source.K, target_vertices,
                                           batch.pairs.target.K)
        return source, target, rendering, gaussians

    def _vertices(self, params: dict[str, torch.Tensor], cam_t: torch.Tensor) -> torch.Tensor:
        return to_camera(self.body(params).vertices, cam_t)


class PairsForStage2:
    """Each pair as its records and the regressor's views of both images (composited onto a
    fresh background, no other augmentation: the renderer's target is the unaugmented crop)."""

    def __init__(self, asset: Asset):
        self.augment = Augmenter(asset, AugmentConfig.off())
        self.spec, self.joints = asset.param_spec, len(asset.joint_names)
        self.sizes = keypoint_sizes(asset)

    def prepare(self, pair: tuple[SynthRecord, SynthRecord], rng: np.random.Generator):
        return pair, [self.augment(record.sample, rng) for record in pair]

    def collate(self, items) -> Stage2Batch:
        pairs = [pair for pair, _ in items]
        views = [samples for _, samples in items]
        batches = [collate([v[k] for v in views], self.spec, self.joints, self.sizes)
                   for k in (0, 1)]
        return Stage2Batch(collate_pairs(pairs), *batches)


def train_stage2(config: Stage2Config, asset: Asset, source, resume: bool = False
                 ) -> RunSummary:
    if not config.joint.stage1_checkpoint or not config.joint.renderer_checkpoint:
        raise TrainingDataError("stage 2 starts from trained networks: set "
                                "joint.stage1_checkpoint (a `pear-train stage1` run's "
                                "checkpoint) and joint.renderer_checkpoint (a `pear-train "
                                "renderer` run's)")
    world = distributed.join()
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out)
    regressor = load_checkpoint(config.joint.stage1_checkpoint, asset).train()
    avatar = load_avatar(config.joint.renderer_checkpoint, asset).train()
    avatar.requires_grad_(config.joint.train_renderer)
    sets = [name for name in keypoint_sizes(asset) if name in config.loss.kp2d_sets]
    modules = JointModules(regressor, avatar, BodyModel(asset),
                           LandmarkModel(BodyModel(asset), [s for s in sets if s != JOINTS]),
                           sets).to(world.device)
    perceptual = perceptual_loss(config.photometric.lpips_weights)
    optimizer, schedule = build_optimizer(nn.ModuleList([regressor, avatar]), config.optim,
                                          world.size)
    start, saved = 0, latest_checkpoint(out) if resume else None
    if saved is not None:
        start = restore_run(saved, regressor, optimizer, schedule, auxiliary=avatar).step
    trained = (DistributedDataParallel(modules, device_ids=[world.device.index]
                                       if world.device.type == "cuda" else None)
               if world.size > 1 else modules)
    data = PairsForStage2(asset)
    stream = ordered_batches(source, config.optim.batch_size, config.run.seed, start,
                             config.optim.steps, data.collate, world.size, world.rank,
                             data.prepare, config.data.workers)

    def write(folder: Path) -> None:
        save_checkpoint(regressor, asset, folder)
        save_avatar(avatar, asset, folder / RENDERER)

    with RunLoop(out, config.run, config.optim.steps, world, start, saved) as loop:
        loop.note(f"perceptual term: {perceptual.name}")
        for batch in stream:
            batch = batch.to(world.device)
            compute_start = time.perf_counter()
            source_pred, target_pred, rendering, gaussians = trained(batch)
            terms = _losses(config, batch, source_pred, target_pred, rendering, gaussians,
                            perceptual)
            total = terms.pop("total")
            if not torch.isfinite(total):
                diverged(loop, "loss", batch.pairs.ids)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                [p for p in modules.parameters() if p.requires_grad], config.optim.grad_clip)
            if not torch.isfinite(norm):
                diverged(loop, "gradient", batch.pairs.ids)
            optimizer.step()
            schedule.step()
            loop.stepped(len(batch), float(distributed.mean_over_ranks(total.detach(), world)),
                         terms, schedule.get_last_lr()[0], time.perf_counter() - compute_start)
            loop.save_if_due(lambda: save_run_checkpoint(
                out / "checkpoint", write, optimizer, schedule, loop.step, config.to_dict(),
                avatar))
            if loop.stopping:
                break
    summary = loop.finish()
    distributed.leave()
    return summary


def _losses(config: Stage2Config, batch: Stage2Batch, source: Prediction, target: Prediction,
            rendering, gaussians, perceptual) -> dict:
    """Eq. 7 on the rendering plus stage 1's losses on both images: the total and what to log
    (the photometric terms, and stage 1's total per image)."""
    photometric = avatar_loss(rendering, gaussians, batch.pairs, config.photometric,
                              perceptual)
    stage1 = (compute_loss(source, batch.source, config.loss).total
              + compute_loss(target, batch.target, config.loss).total)
    return {"total": photometric.total + config.joint.stage1_weight * stage1,
            "photometric": float(photometric.total.detach()),
            "stage1": float(stage1.detach()),
            **{k: v for k, v in photometric.logged().items() if not k.startswith("raw_")}}


def run_stage2(config: Stage2Config, resume: bool = False) -> RunSummary:
    """``pear-train stage2``: the config's asset, pair folders and starting networks."""
    from backend.body import registry

    from ..data.pairs import ShardPairs

    asset = registry.load(config.data.asset)
    if not config.data.train:
        raise TrainingDataError("data.train names no pairs: make them with `pear-train synth "
                                "--pairs` and give the folder")
    return train_stage2(config, asset, ShardPairs(config.data.train), resume)

"""PEAR stage 1: the regressor learns parameters and keypoints (paper Sec. 3.2, Eq. 1-3).

One process or many (``torchrun``): each process takes its slice of every global batch
(``data/loader.py``), DDP averages the gradients, rank 0 logs, validates and writes checkpoints.
AdamW with warm-up and cosine decay, gradient clipping, bf16 autocast on CUDA (fp32 on the
CPU). Checkpoints every ``run.checkpoint_every`` steps and when SIGTERM/SIGINT asks the run to
stop; ``resume`` continues from the last one exactly (the data order depends only on the step).
A loss that is not finite stops the run naming the step and the batch's samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from backend.body.asset import Asset
from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.checkpoint import save_checkpoint
from backend.regressor.layout import ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig

from . import distributed
from .checkpointing import latest_checkpoint, restore_run, save_run_checkpoint
from .config import TrainConfig
from .data.batch import Batch
from .data.loader import Prepare, SampleSource, batches, keypoint_sizes
from .errors import TrainingDataError, TrainingDiverged
from .forward import JOINTS, predict
from .heatmaps import HeatmapHead
from .losses import compute_loss
from .optim import build_optimizer
from .run_loop import RunLoop, RunSummary


def build_network(config: TrainConfig, asset: Asset) -> PearRegressor:
    network = PearRegressor(
        RegressorConfig(backbone=config.model.backbone, head_dim=config.model.head_dim,
                        head_depth=config.model.head_depth, head_heads=config.model.head_heads,
                        iterations=config.model.iterations),
        ParamLayout(asset.param_spec))
    if config.model.pretrained:
        from backend.regressor.pretrained import load_backbone

        load_backbone(network.backbone, config.model.pretrained)
    return network


class TrainedModules(nn.Module):
    """What the optimizer trains: the regressor and, when the heatmap term is on
    (``loss.heatmaps``), the heatmap head on its backbone's tokens (dropped after training)."""

    def __init__(self, regressor: PearRegressor, heatmaps: HeatmapHead | None):
        super().__init__()
        self.regressor, self.heatmaps = regressor, heatmaps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> the output vector, and the heatmap logits (None without the head)."""
        tokens = self.regressor.backbone(images)
        heatmaps = self.heatmaps(tokens) if self.heatmaps is not None else None
        return self.regressor.head(tokens), heatmaps


def build_trained_modules(config: TrainConfig, asset: Asset) -> TrainedModules:
    network = build_network(config, asset)
    heatmaps = None
    if config.loss.heatmaps > 0:
        backbone = network.backbone.config
        heatmaps = HeatmapHead(backbone.dim, len(asset.joint_names), backbone.grid)
    return TrainedModules(network, heatmaps)


def train(config: TrainConfig, asset: Asset, source: SampleSource,
          prepare: Prepare | None = None, resume: bool = False,
          validate: Callable[[PearRegressor, int], dict[str, float]] | None = None
          ) -> RunSummary:
    """Run stage 1 as ``config`` says on ``source``'s samples (``prepare``: compositing and
    augmentation); ``validate(network, step)`` returns metrics every ``run.val_every``
    steps (rank 0)."""
    world = distributed.join()
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out)
    modules = build_trained_modules(config, asset).to(world.device)
    network, layout = modules.regressor, modules.regressor.layout
    sets = [name for name in keypoint_sizes(asset) if name in config.loss.kp2d_sets]
    body = LandmarkModel(BodyModel(asset), [name for name in sets if name != JOINTS]
                         ).to(world.device)
    optimizer, schedule = build_optimizer(modules, config.optim, world.size)
    start = 0
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        start = restore_run(checkpoint, network, optimizer, schedule, modules.heatmaps).step
    trained = (DistributedDataParallel(modules, device_ids=[world.device.index]
                                       if world.device.type == "cuda" else None)
               if world.size > 1 else modules)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if world.device.type == "cuda" and config.optim.bf16_on_cuda else nullcontext())
    stream = batches(source, asset, config.optim.batch_size, config.run.seed, start,
                     config.optim.steps, world.size, world.rank, prepare, config.data.workers)
    with RunLoop(out, config.run, config.optim.steps, world, start, checkpoint) as loop:
        for batch in stream:
            batch = batch.to(world.device)
            compute_start = time.perf_counter()
            with autocast:
                vector, heatmaps = trained(batch.images)
            losses = compute_loss(predict(vector.float(), batch, layout, body, sets), batch,
                                  config.loss, heatmaps)
            loss = losses.total
            if not torch.isfinite(loss):
                _diverged(loop, losses, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(modules.parameters(), config.optim.grad_clip)
            if not torch.isfinite(norm):  # stop before the step spreads it into the weights
                _diverged(loop, losses, batch, "gradient")
            optimizer.step()
            schedule.step()
            loop.stepped(len(batch), float(distributed.mean_over_ranks(loss.detach(), world)),
                         losses.terms(), schedule.get_last_lr()[0],
                         time.perf_counter() - compute_start)
            if validate is not None and loop.validation_due():
                network.eval()
                loop.validated(validate(network, loop.step))
                network.train()
            loop.save_if_due(lambda: save_run_checkpoint(
                out / "checkpoint", partial(save_checkpoint, network, asset), optimizer,
                schedule, loop.step, config.to_dict(), modules.heatmaps))
            if loop.stopping:
                break
    summary = loop.finish()
    distributed.leave()
    return summary


def _diverged(loop: RunLoop, losses, batch: Batch, what: str = "loss") -> None:
    """Stop the run naming the step, the loss terms and the samples that are not finite (a
    gradient that is not finite comes from a finite loss: then all the batch's samples)."""
    bad = {name: float(value.detach().mean()) for name, value in losses.per_sample.items()
           if not torch.isfinite(value).all()}
    samples = [batch.ids[i] for i in range(len(batch))
               if not all(torch.isfinite(v[i]) for v in losses.per_sample.values())]
    raise TrainingDiverged(
        f"the {what} is not finite at step {loop.step + 1} (terms {sorted(bad) or 'all finite'}"
        f"; samples {(samples or batch.ids)[:8]}); the last good checkpoint is "
        f"{loop.checkpoint or 'none (none was written yet)'}: check those samples, lower "
        "optim.lr, then "
        "resume with --resume")


def run_stage1(config: TrainConfig, resume: bool = False, install: bool = False) -> RunSummary:
    """``pear-train stage1``: the config's body model and data (shard folders made by
    ``pear-train synth`` and standard datasets, mixed by ``data.mixture``:
    ``data.sources``), augmentation as configured, validation on ``data.val``; with
    ``install``, the final weights go where the backend looks by default
    (``$PEAR_HOME/checkpoints/<asset>``)."""
    from backend.body import registry

    from .data.augment import AugmentConfig, Augmenter
    from .data.backgrounds import Backgrounds
    from .data.sources import open_sources, smpl_pose_offset
    from .evaluate import evaluate

    asset = registry.load(config.data.asset)
    if not config.data.train:
        raise TrainingDataError("data.train names no data: give shard folders made by "
                                "`pear-train synth` (e.g. --set data.train=['runs/data/train']) "
                                "or datasets as KIND:PATH (coco-wholebody, mmhuman3d, "
                                "smplx-params; docs/training.md, Standard datasets)")
    photos = None
    if config.data.backgrounds:
        from .data.background_photos import PhotoPatches

        photos = PhotoPatches(config.data.backgrounds)
    backgrounds = Backgrounds(photos)
    prepare = Augmenter(asset, AugmentConfig() if config.data.augment else AugmentConfig.off(),
                        backgrounds)
    offset = smpl_pose_offset(config.data.smpl_model, asset)
    validate = None
    if config.data.val:
        val_source = open_sources(config.data.val, {}, asset, smpl_offset=offset)
        plain = Augmenter(asset, AugmentConfig.off(), backgrounds)

        def validate(network: PearRegressor, step: int) -> dict[str, float]:
            return evaluate(network, asset, val_source, plain, config.optim.batch_size,
                            config.run.val_samples)

    source = open_sources(config.data.train, config.data.mixture, asset, config.run.seed,
                          offset)
    summary = train(config, asset, source, prepare, resume, validate)
    if install and summary.checkpoint is not None:
        install_checkpoint(summary.checkpoint, asset)
    return summary


def install_checkpoint(checkpoint: Path, asset: Asset) -> Path:
    """Copy a run's network (weights and config, not the training state) to
    ``$PEAR_HOME/checkpoints/<asset>``, where ``backend fit --estimator regressor`` looks."""
    import shutil

    from backend.checkpoint_folder import CONFIG, WEIGHTS
    from backend.pipeline.recovery import checkpoint_path
    from backend.regressor.checkpoint import check_checkpoint

    check_checkpoint(checkpoint, asset)
    target = checkpoint_path(asset.asset_id)
    target.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG):
        shutil.copy2(checkpoint / name, target / name)
    return target

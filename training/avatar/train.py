"""``pear-train renderer``: the avatar network alone on synthetic pairs (GUAVA's training, at
the scale a config asks), with stage 1's machinery: one process or many (``torchrun``, DDP),
the run order fixed by the step, checkpoints every N steps and on SIGTERM/SIGINT, ``--resume``,
logs and periodic validation; a loss that is not finite stops the run naming the pairs."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from backend.avatar.checkpoint import build_avatar, save_avatar
from backend.avatar.model import GaussianAvatar
from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.camera import to_camera

from .. import distributed
from ..checkpointing import latest_checkpoint, restore_run, save_run_checkpoint
from ..data.loader import ordered_batches
from ..errors import TrainingDataError, TrainingDiverged
from ..logs import RunLog
from ..optim import build_optimizer
from ..stage1 import RunSummary, StopRequest
from .batch import PairBatch, View, collate_pairs
from .config import RendererTrainConfig
from .losses import avatar_loss, perceptual_loss


def posed_vertices(body: BodyModel, view: View) -> torch.Tensor:
    """The view's body (B, V, 3) in its camera's frame."""
    params = {name: value.to(body.v_template.dtype) for name, value in view.params.items()}
    return to_camera(body(params).vertices, view.cam_t.to(body.v_template.dtype))


def train_renderer(config: RendererTrainConfig, asset: Asset, source, resume: bool = False,
                   validate: Callable[[GaussianAvatar, int], dict[str, float]] | None = None
                   ) -> RunSummary:
    """Train on ``source``'s pairs (``data.pairs.ShardPairs``); ``validate(avatar, step)``
    returns metrics every ``run.val_every`` steps (rank 0)."""
    world = distributed.join()
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out)
    avatar = build_avatar(config.model, asset).to(world.device)
    body = BodyModel(asset).to(world.device)
    perceptual = perceptual_loss(config.loss.lpips_weights)
    optimizer, schedule = build_optimizer(avatar, config.optim, world.size)
    start, saved = 0, latest_checkpoint(out) if resume else None
    if saved is not None:
        start = restore_run(saved, avatar, optimizer, schedule).step
    trained = (DistributedDataParallel(avatar, device_ids=[world.device.index]
                                       if world.device.type == "cuda" else None)
               if world.size > 1 else avatar)
    log = RunLog(out, config.optim.steps, start) if world.main else None
    if log is not None:
        log.note(f"perceptual term: {perceptual.name}"
                 + (" (standing in for LPIPS: no loss.lpips_weights)"
                    if perceptual.name == "ssim" else ""))
    stream = ordered_batches(source, config.optim.batch_size, config.run.seed, start,
                             config.optim.steps, collate_pairs, world.size, world.rank,
                             workers=config.data.workers)
    began, compute_s, images, loss_value = time.perf_counter(), 0.0, 0, float("nan")
    step = start
    with StopRequest() as stop:
        window_start, window_images = time.perf_counter(), 0
        for batch in stream:
            batch = batch.to(world.device)
            compute_start = time.perf_counter()
            with torch.no_grad():
                source_vertices = posed_vertices(body, batch.source)
                target_vertices = posed_vertices(body, batch.target)
            rendering, gaussians = trained(batch.source.image, source_vertices, batch.source.K,
                                           target_vertices, batch.target.K)
            losses = avatar_loss(rendering, gaussians, batch, config.loss, perceptual)
            if not torch.isfinite(losses.total):
                _diverged(step, "loss", batch, saved)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            norm = torch.nn.utils.clip_grad_norm_(avatar.parameters(), config.optim.grad_clip)
            if not torch.isfinite(norm):
                _diverged(step, "gradient", batch, saved)
            optimizer.step()
            schedule.step()
            compute_s += time.perf_counter() - compute_start
            step += 1
            images += len(batch)
            window_images += len(batch)
            loss_value = float(distributed.mean_over_ranks(losses.total.detach(), world))
            if log is not None and (step % config.run.log_every == 0
                                    or step == config.optim.steps):
                rate = window_images * world.size / (time.perf_counter() - window_start)
                log.step(step, {"loss": loss_value, **losses.logged(),
                                "lr": schedule.get_last_lr()[0]}, rate)
                window_start, window_images = time.perf_counter(), 0
            if validate is not None and world.main and step % config.run.val_every == 0:
                avatar.eval()
                log.validation(step, validate(avatar, step))
                avatar.train()
            if (step % config.run.checkpoint_every == 0 or step == config.optim.steps
                    or stop.asked):
                if world.main:
                    saved = save_run_checkpoint(out / "checkpoint",
                                                partial(save_avatar, avatar, asset), optimizer,
                                                schedule, step, config.to_dict())
                distributed.barrier(world)
            if stop.asked:
                break
    if log is not None:
        log.note(f"{'stopped' if stop.asked else 'finished'} at step {step}; checkpoint: "
                 f"{saved}")
        log.close()
    distributed.leave()
    return RunSummary(step, stop.asked, loss_value, saved, time.perf_counter() - began,
                      compute_s, images)


def _diverged(step: int, what: str, batch: PairBatch, saved: Path | None) -> None:
    raise TrainingDiverged(
        f"the {what} is not finite at step {step + 1} (pairs {batch.ids[:8]}); the last good "
        f"checkpoint is {saved or 'none (none was written yet)'}: check those pairs, lower "
        "optim.lr, then resume with --resume")


def run_renderer(config: RendererTrainConfig, resume: bool = False) -> RunSummary:
    """``pear-train renderer``: the config's asset and pair folders."""
    from backend.body import registry

    from ..data.pairs import ShardPairs
    from .evaluate import evaluate_renderer

    asset = registry.load(config.data.asset)
    if not config.data.train:
        raise TrainingDataError("data.train names no pairs: make them with `pear-train synth "
                                "--pairs --count N --out DIR` and give the folder "
                                "(e.g. --set data.train=['runs/data/pairs/train'])")
    validate = None
    if config.data.val:
        val_pairs = ShardPairs(config.data.val)

        def validate(avatar: GaussianAvatar, step: int) -> dict[str, float]:
            return evaluate_renderer(avatar, asset, val_pairs, config.run.val_samples,
                                     config.optim.batch_size)["avatar"]

    return train_renderer(config, asset, ShardPairs(config.data.train), resume, validate)

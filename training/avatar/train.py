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

from backend.avatar.checkpoint import build_avatar, save_avatar, start_encoder_from
from backend.avatar.model import GaussianAvatar
from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.camera import to_camera

from .. import distributed
from ..checkpointing import latest_checkpoint, restore_run, save_run_checkpoint
from ..data.loader import ordered_batches
from ..errors import TrainingDataError, TrainingDiverged
from ..optim import build_optimizer
from ..run_loop import RunLoop, RunSummary
from .batch import View, collate_pairs
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
    elif config.model.encoder_weights:  # a fresh run starts from them; a resumed one has its own
        start_encoder_from(avatar, config.model.encoder_weights)
    trained = (DistributedDataParallel(avatar, device_ids=[world.device.index]
                                       if world.device.type == "cuda" else None)
               if world.size > 1 else avatar)
    stream = ordered_batches(source, config.optim.batch_size, config.run.seed, start,
                             config.optim.steps, collate_pairs, world.size, world.rank,
                             workers=config.data.workers)
    with RunLoop(out, config.run, config.optim.steps, world, start, saved) as loop:
        loop.note(f"perceptual term: {perceptual.name}" + (
            " (standing in for LPIPS: no loss.lpips_weights)" if perceptual.name == "ssim"
            else ""))
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
                diverged(loop, "loss", batch.ids)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            norm = torch.nn.utils.clip_grad_norm_(avatar.parameters(), config.optim.grad_clip)
            if not torch.isfinite(norm):
                diverged(loop, "gradient", batch.ids)
            optimizer.step()
            schedule.step()
            loop.stepped(len(batch),
                         float(distributed.mean_over_ranks(losses.total.detach(), world)),
                         losses.logged(), schedule.get_last_lr()[0],
                         time.perf_counter() - compute_start)
            if validate is not None and loop.validation_due():
                avatar.eval()
                loop.validated(validate(avatar, loop.step))
                avatar.train()
            loop.save_if_due(lambda: save_run_checkpoint(
                out / "checkpoint", partial(save_avatar, avatar, asset), optimizer, schedule,
                loop.step, config.to_dict()))
            if loop.stopping:
                break
    summary = loop.finish()
    distributed.leave()
    return summary


def diverged(loop: RunLoop, what: str, ids: list[str]) -> None:
    raise TrainingDiverged(
        f"the {what} is not finite at step {loop.step + 1} (pairs {ids[:8]}); the last good "
        f"checkpoint is {loop.checkpoint or 'none (none was written yet)'}: check those "
        "pairs, lower optim.lr, then resume with --resume")


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

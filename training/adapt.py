"""``pear-train adapt``: fine-tune on your actor. The footage is pseudo-labelled by the tracker
(``pseudo_label``), split by time — the last part of every clip held out — and only the
adapters (``backend.regressor.adapters``) learn on the rest, the base frozen; training stops
when the held-out keypoint error has not improved for ``patience`` validations, and the best
adapter is kept. ``full=True`` fine-tunes the whole network instead, for the comparison
HMR-Adapter draws (same steps, same data).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from backend.body.asset import Asset
from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.adapter_checkpoint import save_adapter
from backend.regressor.adapters import AdaptedRegressor
from backend.regressor.checkpoint import load_checkpoint, save_checkpoint

from .config import LossConfig
from .data.augment import AugmentConfig, Augmenter
from .data.backgrounds import Backgrounds
from .data.batch import Sample
from .data.loader import batches, keypoint_sizes
from .data.shards import ShardSamples
from .errors import TrainingDataError
from .evaluate import evaluate
from .forward import JOINTS, predict
from .losses import compute_loss
from .pseudo_label import pseudo_label

LABELS, STATE, REPORT = "labels", "state.pt", "adapt.json"
# New zero-initialised branches learn at a high rate (HMR-Adapter's); a trained network
# fine-tuned whole at that rate forgets in a step, so the comparison takes a tenth of stage 1's.
ADAPTER_LR, FULL_LR = 1e-3, 5e-5
METRIC = "kp2d_px"  # the held-out body keypoint error (pixels of the 256-pixel crop)


@dataclass(frozen=True)
class AdaptSettings:
    steps: int = 300
    batch_size: int = 8
    lr: float | None = None  # None: ADAPTER_LR, or FULL_LR with ``full``
    held_out: float = 0.2  # of every clip's frames, its last ones
    val_every: int = 25
    patience: int = 3  # validations without a better held-out error before stopping
    full: bool = False  # fine-tune every weight instead of adapters
    seed: int = 0


@dataclass
class AdaptReport:
    trained: str  # "adapters" | "full network"
    trained_parameters: int
    base_parameters: int
    train_samples: int
    held_out_samples: int
    before: dict[str, float]  # held-out metrics of the base
    after: dict[str, float]  # of the best step's network
    best_step: int
    steps_run: int
    stopped_early: bool
    seconds: float
    out: str

    def lines(self) -> list[str]:
        share = self.trained_parameters / self.base_parameters
        return [f"trained {self.trained}: {self.trained_parameters:,} parameters "
                f"({100 * share:.2f} % of the base's {self.base_parameters:,})",
                f"samples: {self.train_samples} to train, {self.held_out_samples} held out "
                "(the last frames of each clip)",
                f"held-out body keypoints: {self.before[METRIC]:.2f} px before, "
                f"{self.after[METRIC]:.2f} px after (best at step {self.best_step}; "
                f"{self.steps_run} steps run{', stopped early' if self.stopped_early else ''})",
                f"wrote {self.out}"]


class Selected:
    """Some samples of another source, in the order given."""

    def __init__(self, source, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.source[self.indices[index]]


def split_by_time(sources: Sequence[str], held_out: float) -> tuple[list[int], list[int]]:
    """Record positions to train on and to hold out, from each record's ``clip:frame``: the
    last ``held_out`` of every clip's frames (at least one) are held out."""
    clips: dict[str, list[tuple[int, int]]] = {}
    for position, source in enumerate(sources):
        clip, _, frame = source.rpartition(":")
        clips.setdefault(clip, []).append((int(frame), position))
    train, held = [], []
    for frames in clips.values():
        frames.sort()
        cut = len(frames) - max(1, math.ceil(held_out * len(frames)))
        if cut < 1:
            raise TrainingDataError(f"a clip gave {len(frames)} labelled frame(s): too few to "
                                    "train on and hold some out; give longer footage")
        train += [position for _, position in frames[:cut]]
        held += [position for _, position in frames[cut:]]
    return train, held


def adapt(base: Path, footage: Sequence[Path], out: Path, asset: Asset,
          settings: AdaptSettings = AdaptSettings(), resume: bool = False,
          say: Callable[[str], None] = print,
          progress: Callable[[int, int, float], None] | None = None) -> AdaptReport:
    """Adapt the checkpoint ``base`` to ``footage``; the adapter (or, ``full``, the network)
    goes to ``out``. ``progress(step, steps, loss)`` after each step."""
    start_time = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    labels = out / LABELS
    if not (labels / "manifest.json").is_file():
        say(f"pseudo-labelling {len(footage)} clip(s) with the tracker ...")
        pseudo_label(list(footage), labels, asset)
    samples = ShardSamples(labels)
    train_ids, held_ids = split_by_time([samples.record(i).source
                                         for i in range(len(samples))], settings.held_out)
    held = Selected(samples, held_ids)
    # The crops are opaque (the footage's own background); training augments them as stage 1
    # does, held-out frames are seen as they are.
    backgrounds = Backgrounds(None)
    augment, plain = (Augmenter(asset, config, backgrounds)
                      for config in (AugmentConfig(), AugmentConfig.off()))
    torch.manual_seed(settings.seed)
    base_network = load_checkpoint(base, asset)
    base_parameters = sum(p.numel() for p in base_network.parameters())
    if settings.full:
        network, trained = base_network, base_network
    else:
        network = AdaptedRegressor(base_network, LandmarkModel(BodyModel(asset), sets=[]),
                                   asset.joint_names)
        trained = network.adapter
    trained.requires_grad_(True)
    lr = settings.lr or (FULL_LR if settings.full else ADAPTER_LR)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=lr, weight_decay=0.0)
    state = {"step": 0, "best": None, "best_step": 0, "stale": 0,
             "before": None, "best_weights": None}
    if resume and (out / STATE).is_file():
        saved = torch.load(out / STATE, weights_only=False)
        trained.load_state_dict(saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    if state["before"] is None:
        state["before"] = evaluate(network.eval(), asset, held, plain)
        state["best"] = state["before"][METRIC]
        state["best_weights"] = copy.deepcopy(trained.state_dict())
    say(f"held-out body keypoints before: {state['before'][METRIC]:.2f} px "
        f"({len(held_ids)} samples; {len(train_ids)} to train on)")

    sizes = keypoint_sizes(asset)
    loss_config = LossConfig()
    sets = [name for name in sizes if name in loss_config.kp2d_sets]
    body = LandmarkModel(BodyModel(asset), [name for name in sets if name != JOINTS])
    stream = batches(Selected(samples, train_ids), asset, settings.batch_size, settings.seed,
                     state["step"], settings.steps, prepare=augment)
    stopped_early = False
    for batch in stream:
        network.train()
        vector = network(batch.images)
        loss = compute_loss(predict(vector, batch, base_network.layout, body, sets), batch,
                            loss_config).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        state["step"] += 1
        if progress is not None:
            progress(state["step"], settings.steps, float(loss.detach()))
        if state["step"] % settings.val_every == 0 or state["step"] == settings.steps:
            error = evaluate(network.eval(), asset, held, plain)[METRIC]
            say(f"step {state['step']}: held-out body keypoints {error:.2f} px")
            if error < state["best"]:
                state.update(best=error, best_step=state["step"], stale=0,
                             best_weights=copy.deepcopy(trained.state_dict()))
            else:
                state["stale"] += 1
            torch.save({"weights": trained.state_dict(), "optimizer": optimizer.state_dict(),
                        "state": state}, out / STATE)
            if state["stale"] >= settings.patience:
                stopped_early = True
                break
    trained.load_state_dict(state["best_weights"])
    after = evaluate(network.eval(), asset, held, plain)
    if settings.full:
        written = save_checkpoint(base_network, asset, out / "checkpoint")
    else:
        written = save_adapter(network, base, asset, out / "adapter")
    report = AdaptReport("full network" if settings.full else "adapters",
                         sum(p.numel() for p in trained.parameters()), base_parameters,
                         len(train_ids), len(held_ids), state["before"], after,
                         state["best_step"], state["step"], stopped_early,
                         time.perf_counter() - start_time, str(written))
    (out / REPORT).write_text(json.dumps(asdict(report), indent=1))
    return report

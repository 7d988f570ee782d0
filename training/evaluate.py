"""How good a regressor is on labelled samples, always beside the mean-parameter baseline: the
rest pose, mean shape and neutral face with, per sample, the crop camera that fits its 2D
joints best. A network that does not beat that baseline has learnt nothing about the person.

Metrics (each over the samples that carry the label):
- ``mpjpe_mm``, ``pa_mpjpe_mm``: the 22 body joints, pelvis-centred / Procrustes-aligned;
- ``hand_pa_mpjpe_mm``: each hand's wrist and 15 finger joints, aligned per hand;
- ``kp2d_px``: the body joints' 2D error in crop pixels (256 high), and ``pck_005``/``pck_01``,
  the share within 5 % / 10 % of the crop height; ``pose33_kp2d_px``, ``pose33_pck_005``,
  ``pose33_pck_01`` the same over MediaPipe's 33 pose points (what 2D datasets such as
  COCO-WholeBody label);
- ``hand_kp2d_px``, ``face_nme``: the MediaPipe hand points' 2D error in crop pixels, and the
  face points' mean error over the inter-ocular distance;
- ``expression_l1``: the mean absolute error of the expression coefficients.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.layout import ParamLayout
from backend.regressor.vit import INPUT_SIZE
from backend.tracking.metrics import pa_error_mm

from .data.batch import Batch, Sample, collate
from .data.loader import Prepare, SampleSource, keypoint_sizes
from .forward import JOINTS, Prediction, predict

BODY_JOINTS = list(range(22))  # SMPL-X: pelvis to the wrists
HANDS = {"left": [20, *range(25, 40)], "right": [21, *range(40, 55)]}
POSE_SET = "mediapipe_pose33"
HAND_SETS = ("mediapipe_hand_left", "mediapipe_hand_right")
FACE_SET, FACE_EYE_CORNERS = "mediapipe_face478", (33, 263)  # MediaPipe's outer eye corners
CROP_PIXELS = INPUT_SIZE[0]


def fit_crop_camera(vector: torch.Tensor, batch: Batch, layout: ParamLayout,
                    body: LandmarkModel, iterations: int = 150) -> torch.Tensor:
    """``vector`` with its crop camera (s, tx, ty) refitted per sample to the labelled 2D body
    joints and pose points (the baseline's camera: the best any pose-blind guess can do)."""
    params_part = vector[:, :layout.params_size].detach()
    camera = vector[:, layout.params_size:].detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([camera], lr=0.02)
    sets = [name for name in (JOINTS, POSE_SET) if name in batch.keypoints2d]
    for _ in range(iterations):
        optimizer.zero_grad()
        predicted = predict(torch.cat([params_part, camera], 1), batch, layout, body, sets)
        error = sum(((predicted.keypoints2d[name] - batch.keypoints2d[name][..., :2]).abs()
                     .sum(-1) * batch.keypoints2d[name][..., 2]).sum() for name in sets)
        error.backward()
        optimizer.step()
        with torch.no_grad():
            camera[:, 0].clamp_(min=0.05)
    return torch.cat([params_part, camera.detach()], 1)


class _Tally:
    """Per-metric sums and counts over batches."""

    def __init__(self):
        self.sums, self.counts = defaultdict(float), defaultdict(int)

    def add(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).reshape(-1)
        self.sums[name] += float(values.sum())
        self.counts[name] += values.size

    def result(self) -> dict[str, float]:
        return {name: round(self.sums[name] / self.counts[name], 5) for name in self.sums
                if self.counts[name]}


def _measure_2d(tally: _Tally, prefix: str, predicted: torch.Tensor, target: torch.Tensor
                ) -> None:
    """Error in crop pixels and PCK of the labelled points (target: (B, K, 3) with confidence)."""
    seen = target[..., 2] > 0
    if seen.any():
        error = (predicted.detach() - target[..., :2]).norm(dim=-1)[seen].numpy()
        tally.add(f"{prefix}kp2d_px", error * CROP_PIXELS)
        tally.add(f"{prefix}pck_005", error < 0.05)
        tally.add(f"{prefix}pck_01", error < 0.1)


def _measure(tally: _Tally, prediction: Prediction, batch: Batch) -> None:
    labelled = batch.has_joints3d > 0
    if labelled.any():
        predicted = prediction.joints3d[labelled].detach().numpy()
        truth = batch.joints3d[labelled].numpy()
        body_p = predicted[:, BODY_JOINTS] - predicted[:, :1]
        body_t = truth[:, BODY_JOINTS] - truth[:, :1]
        tally.add("mpjpe_mm", 1000 * np.linalg.norm(body_p - body_t, axis=-1).mean(1))
        tally.add("pa_mpjpe_mm", [pa_error_mm(p[None], t[None]) for p, t in zip(
            body_p, body_t, strict=True)])
        for joints in HANDS.values():
            tally.add("hand_pa_mpjpe_mm", [pa_error_mm(p[None], t[None]) for p, t in zip(
                predicted[:, joints], truth[:, joints], strict=True)])
    _measure_2d(tally, "", prediction.keypoints2d[JOINTS][:, BODY_JOINTS],
                batch.keypoints2d[JOINTS][:, BODY_JOINTS])
    if POSE_SET in prediction.keypoints2d and POSE_SET in batch.keypoints2d:
        _measure_2d(tally, "pose33_", prediction.keypoints2d[POSE_SET],
                    batch.keypoints2d[POSE_SET])
    for name in HAND_SETS:
        if name in prediction.keypoints2d and name in batch.keypoints2d:
            target = batch.keypoints2d[name]
            seen = target[..., 2] > 0
            error = (prediction.keypoints2d[name].detach() - target[..., :2]).norm(dim=-1)
            tally.add("hand_kp2d_px", error[seen].numpy() * CROP_PIXELS)
    if FACE_SET in prediction.keypoints2d and FACE_SET in batch.keypoints2d:
        target = batch.keypoints2d[FACE_SET]
        corners = target[:, list(FACE_EYE_CORNERS)]
        usable = (corners[..., 2] > 0).all(1) & ((target[..., 2] > 0).sum(1) > 0)
        if usable.any():
            ocular = (corners[usable, 0, :2] - corners[usable, 1, :2]).norm(dim=-1)
            error = (prediction.keypoints2d[FACE_SET][usable].detach()
                     - target[usable, :, :2]).norm(dim=-1)
            seen = target[usable, :, 2] > 0
            tally.add("face_nme", ((error * seen).sum(1) / seen.sum(1) / ocular).numpy())
    if "expression" in prediction.params:
        has = batch.has_params["expression"] > 0
        if has.any():
            tally.add("expression_l1", (prediction.params["expression"][has].detach()
                                        - batch.params["expression"][has]).abs().mean(1))


def predictions(network: torch.nn.Module | None, asset: Asset, source: SampleSource,
                prepare: Prepare | None = None, batch_size: int = 16, limit: int | None = None,
                seed: int = 0) -> Iterator[tuple[list[Sample], Batch, Prediction]]:
    """What ``network`` (None: the mean-parameter baseline) predicts for the first ``limit``
    samples of ``source`` (all by default), in order, batch by batch, with the samples as
    prepared; ``prepare`` (compositing) is seeded per sample by ``seed``, so the network and
    the baseline see the same images."""
    layout = ParamLayout(asset.param_spec)
    sizes = keypoint_sizes(asset)
    body = LandmarkModel(BodyModel(asset), [name for name in sizes if name != JOINTS])
    count = min(len(source), limit or len(source))
    for first in range(0, count, batch_size):
        samples = [source[i] for i in range(first, min(first + batch_size, count))]
        if prepare is not None:
            samples = [prepare(sample, np.random.default_rng([seed, first + k]))
                       for k, sample in enumerate(samples)]
        batch = collate(samples, asset.param_spec, len(asset.joint_names), sizes)
        if network is None:
            vector = fit_crop_camera(layout.mean().repeat(len(batch), 1), batch, layout, body)
        else:
            with torch.no_grad():
                vector = network(batch.images).float()
        with torch.no_grad():  # not around the yield: grad mode is global, not the generator's
            prediction = predict(vector, batch, layout, body, list(sizes))
        yield samples, batch, prediction


def evaluate(network: torch.nn.Module | None, asset: Asset, source: SampleSource,
             prepare: Prepare | None = None, batch_size: int = 16,
             limit: int | None = None, seed: int = 0) -> dict[str, float]:
    """Metrics of ``network`` (None: the mean-parameter baseline) on the first ``limit``
    samples of ``source`` (``predictions``). ``body_pose_spread``: how much the predicted body
    pose varies between samples, as a fraction of how much the truth does (1 for a perfect
    network, 0 for one that answers every image alike: a check that a low error comes from
    the images and not from a well-chosen constant)."""
    tally = _Tally()
    predicted, truth = [], []
    for _, batch, prediction in predictions(network, asset, source, prepare, batch_size,
                                            limit, seed):
        _measure(tally, prediction, batch)
        if "body_pose" in batch.params:
            has = batch.has_params["body_pose"] > 0
            predicted.append(prediction.params["body_pose"][has].flatten(1))
            truth.append(batch.params["body_pose"][has].flatten(1))
    result = tally.result()
    if sum(len(t) for t in truth) >= 2:
        spread = torch.cat(truth).std(0).mean()
        if spread > 0:
            result["body_pose_spread"] = round(float(torch.cat(predicted).std(0).mean()
                                                     / spread), 4)
    return result


def compare(network: torch.nn.Module, asset: Asset, source: SampleSource,
            prepare: Prepare | None = None, batch_size: int = 16,
            limit: int | None = None) -> dict[str, dict[str, float]]:
    """The network's metrics, the baseline's, and their ratio (network / baseline; below 1 is
    better for errors, above 1 for PCK)."""
    mine = evaluate(network, asset, source, prepare, batch_size, limit)
    baseline = evaluate(None, asset, source, prepare, batch_size, limit)
    ratio = {name: round(mine[name] / baseline[name], 4) for name in mine
             if baseline.get(name)}
    return {"network": mine, "baseline": baseline, "ratio": ratio}

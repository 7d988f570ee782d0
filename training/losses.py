"""PEAR's stage-1 losses (paper Eq. 1-3), apart from the forward as HMR2 keeps them.

- Eq. 1, body: squared error of the SMPL-X body rotations (as matrices, as HMR2 compares them)
  and shape. The hands' rotations are part of SMPL-X's body pose; they get their own weight.
- Eq. 2, head: L1 on the head's pose (jaw, eyes; as matrices), shape, expression and eyelids.
- Eq. 3, keypoints: L1 on pelvis-centred 3D joints, and confidence-weighted L1 on every 2D
  keypoint set in normalized crop units.
- Not PEAR's: when training from scratch, the joints' heatmaps drawn from the backbone's
  tokens (``heatmaps.py``), in place of its ViTPose-pretrained backbone.

Each term is computed per sample (summed over its joints, keypoints and coefficients, as HMR2
sums) and masked where the sample has no such label; the batch's loss is the mean over samples
of the weighted sum. Per-sample values stay available so a bad batch can be traced to samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import LossConfig
from .data.batch import Batch
from .forward import JOINTS, Prediction
from .heatmaps import heatmap_loss

# parameter name -> (LossConfig weight, compared as rotation matrices, squared (L2) or L1)
PARAM_TERMS = {
    "global_orient": ("global_orient", True, "l2"),
    "body_pose": ("body_pose", True, "l2"),
    "left_hand_pose": ("hand_pose", True, "l2"),
    "right_hand_pose": ("hand_pose", True, "l2"),
    "betas": ("betas", False, "l2"),
    "jaw_pose": ("head_pose", True, "l1"),
    "eye_pose": ("head_pose", True, "l1"),
    "shape": ("head_shape", False, "l1"),
    "expression": ("expression", False, "l1"),
    "eyelids": ("eyelids", False, "l1"),
}
PELVIS = 0


@dataclass
class Losses:
    per_sample: dict[str, torch.Tensor]  # term -> (B,), weighted and masked

    @property
    def total(self) -> torch.Tensor:
        """The batch's loss: the mean over samples of the weighted terms' sum."""
        return torch.stack(list(self.per_sample.values())).sum(0).mean()

    def terms(self) -> dict[str, float]:
        """Each term's batch mean, for logs."""
        return {name: float(value.detach().mean()) for name, value in self.per_sample.items()}


def _per_sample(difference: torch.Tensor, kind: str) -> torch.Tensor:
    values = difference.square() if kind == "l2" else difference.abs()
    return values.flatten(1).sum(1)


def compute_loss(prediction: Prediction, batch: Batch, weights: LossConfig,
                 heatmaps: torch.Tensor | None = None) -> Losses:
    """The weighted terms; ``heatmaps``: the heatmap head's logits, when it is trained."""
    from backend.body.rotations import axis_angle_to_matrix

    terms: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        terms[name] = terms[name] + value if name in terms else value

    for name, (weight_name, as_matrix, kind) in PARAM_TERMS.items():
        if name not in prediction.params or name not in batch.params:
            continue
        if as_matrix:
            truth = axis_angle_to_matrix(batch.params[name])
            difference = prediction.rotations[name] - truth
        else:
            difference = prediction.params[name] - batch.params[name]
        add(weight_name, getattr(weights, weight_name) * batch.has_params[name]
            * _per_sample(difference, kind))

    predicted = prediction.joints3d - prediction.joints3d[:, PELVIS:PELVIS + 1]
    truth = batch.joints3d - batch.joints3d[:, PELVIS:PELVIS + 1]
    add("kp3d", weights.kp3d * batch.has_joints3d * _per_sample(predicted - truth, "l1"))

    for name, set_weight in weights.kp2d_sets.items():
        if name not in prediction.keypoints2d or name not in batch.keypoints2d:
            continue
        target = batch.keypoints2d[name]
        error = (prediction.keypoints2d[name] - target[..., :2]).abs() * target[..., 2:]
        add("kp2d", weights.kp2d * set_weight * error.flatten(1).sum(1))

    if heatmaps is not None:
        add("heatmaps", weights.heatmaps * heatmap_loss(heatmaps, batch.keypoints2d[JOINTS],
                                                        weights.heatmap_sigma))
    return Losses(terms)

"""The one sample type every data source yields (synthetic renders, pseudo-labels, standard
datasets) and the batch the trainer consumes.

Every label is optional: a source fills what it knows and the rest is masked out of the loss
(``has_*``). Coordinates:

- parameters: the body model's own (axis-angle rotations, coefficients), by spec name;
- ``joints3d``: the asset's joints in the camera frame (OpenCV axes), metres;
- ``keypoints2d``: per keypoint set (``joints`` = the asset's joints, or a landmark set name),
  ``(K, 3)``: x, y in *normalized crop units* — pixels relative to the crop centre divided by
  the crop height, so the 256x192 crop spans x in [-0.375, 0.375] and y in [-0.5, 0.5] — and a
  confidence (0 = not labelled or not visible);
- the crop's camera: the full frame's focal length and principal point (pixels) and the crop's
  centre and height in the full frame (CLIFF's bookkeeping), so projections are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from backend.body.params import ParamSpec


@dataclass
class Sample:
    image: np.ndarray  # (256, 192, 3) uint8 RGB crop
    focal: float
    principal_point: tuple[float, float]
    box_center: tuple[float, float]
    box_height: float
    params: dict[str, np.ndarray] = field(default_factory=dict)  # name -> spec shape
    joints3d: np.ndarray | None = None  # (J, 3)
    keypoints2d: dict[str, np.ndarray] = field(default_factory=dict)  # set -> (K, 3)
    mask: np.ndarray | None = None  # (256, 192) bool person mask, if known
    id: str = ""  # source and position, for logs ("synth/000012:34")


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, 256, 192) float, ImageNet-normalized
    focal: torch.Tensor  # (B,)
    principal_point: torch.Tensor  # (B, 2)
    box_center: torch.Tensor  # (B, 2)
    box_height: torch.Tensor  # (B,)
    params: dict[str, torch.Tensor]  # name -> (B, *shape); zeros where not labelled
    has_params: dict[str, torch.Tensor]  # name -> (B,) 0/1
    joints3d: torch.Tensor  # (B, J, 3)
    has_joints3d: torch.Tensor  # (B,) 0/1
    keypoints2d: dict[str, torch.Tensor]  # set -> (B, K, 3)
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> Batch:
        move = {name: value.to(device) for name, value in vars(self).items()
                if isinstance(value, torch.Tensor)}
        nested = {name: {k: v.to(device) for k, v in getattr(self, name).items()}
                  for name in ("params", "has_params", "keypoints2d")}
        return Batch(**move, **nested, ids=self.ids)


def collate(samples: list[Sample], spec: list[ParamSpec], num_joints: int,
            keypoint_sizes: dict[str, int]) -> Batch:
    """Stack samples into a batch for an asset (its parameter ``spec``, ``num_joints`` and the
    size of each keypoint set the loss knows); labels a sample lacks become zeros with
    ``has`` 0, so every batch has the same fields whatever mix of sources made it."""
    from backend.regressor.inference import normalize

    count = len(samples)
    params, has_params = {}, {}
    for param in spec:
        values = np.zeros((count, *param.shape), np.float32)
        has = np.zeros(count, np.float32)
        for i, sample in enumerate(samples):
            if param.name in sample.params:
                values[i] = np.asarray(sample.params[param.name]).reshape(param.shape)
                has[i] = 1.0
        params[param.name], has_params[param.name] = torch.from_numpy(values), torch.from_numpy(has)
    joints3d = np.zeros((count, num_joints, 3), np.float32)
    has_joints3d = np.zeros(count, np.float32)
    for i, sample in enumerate(samples):
        if sample.joints3d is not None:
            joints3d[i], has_joints3d[i] = sample.joints3d, 1.0
    keypoints = {}
    for name, size in keypoint_sizes.items():
        values = np.zeros((count, size, 3), np.float32)
        for i, sample in enumerate(samples):
            if name in sample.keypoints2d:
                values[i] = sample.keypoints2d[name]
        keypoints[name] = torch.from_numpy(values)
    return Batch(
        images=normalize(np.stack([s.image for s in samples])),
        focal=torch.tensor([s.focal for s in samples], dtype=torch.float32),
        principal_point=torch.tensor([s.principal_point for s in samples], dtype=torch.float32),
        box_center=torch.tensor([s.box_center for s in samples], dtype=torch.float32),
        box_height=torch.tensor([s.box_height for s in samples], dtype=torch.float32),
        params=params, has_params=has_params, joints3d=torch.from_numpy(joints3d),
        has_joints3d=torch.from_numpy(has_joints3d), keypoints2d=keypoints,
        ids=[s.id for s in samples])

"""Pairs of synthetic records as training tensors: both images on black (GUAVA masks its
ground truth to a black background), both bodies' parameters and cameras (the crop seen by the
full-frame camera), and boxes around the target's face and hands for the crop losses."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from backend.regressor.crop_camera import crop_intrinsics
from backend.regressor.vit import INPUT_SIZE

from ..data.shards import SynthRecord

# The target's parts that get their own loss on a crop, by their keypoint sets.
PARTS = {"face": "mediapipe_face478", "left_hand": "mediapipe_hand_left",
         "right_hand": "mediapipe_hand_right"}
BOX_MARGIN = 0.2  # each side, as a fraction of the box's longer side
MIN_POINTS = 3  # seen keypoints a part needs to get a box


@dataclass
class View:
    """One side of B pairs."""

    image: torch.Tensor  # (B, 3, H, W) in [0, 1], premultiplied onto black
    alpha: torch.Tensor  # (B, 1, H, W)
    params: dict[str, torch.Tensor]  # name -> (B, *spec shape)
    cam_t: torch.Tensor  # (B, 3) camera-frame translation of the model origin
    K: torch.Tensor  # (B, 3, 3) intrinsics of the crop


@dataclass
class PairBatch:
    source: View
    target: View
    boxes: torch.Tensor  # (B, parts, 4) x0, y0, x1, y1 in target pixels
    has_box: torch.Tensor  # (B, parts) bool
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> PairBatch:
        def move(view: View) -> View:
            return View(*(({k: v.to(device) for k, v in value.items()} if isinstance(value, dict)
                           else value.to(device))
                          for value in (getattr(view, f.name) for f in fields(View))))

        return PairBatch(move(self.source), move(self.target), self.boxes.to(device),
                         self.has_box.to(device), self.ids)


def collate_pairs(pairs: list[tuple[SynthRecord, SynthRecord]]) -> PairBatch:
    sources, targets = zip(*pairs, strict=True)
    boxes, has_box = zip(*(part_boxes(record) for record in targets), strict=True)
    return PairBatch(_view(sources), _view(targets), torch.as_tensor(np.stack(boxes)),
                     torch.as_tensor(np.stack(has_box)),
                     [f"{s.sample.id}+{t.sample.id}" for s, t in pairs])


def part_boxes(record: SynthRecord) -> tuple[np.ndarray, np.ndarray]:
    """(parts, 4) boxes around each part's seen keypoints in crop pixels, grown by BOX_MARGIN,
    and which parts have one."""
    height, width = INPUT_SIZE
    boxes, found = np.zeros((len(PARTS), 4), np.float32), np.zeros(len(PARTS), bool)
    for k, name in enumerate(PARTS.values()):
        points = record.sample.keypoints2d[name]
        seen = points[points[:, 2] > 0, :2] * height + (width / 2, height / 2)
        if len(seen) < MIN_POINTS:
            continue
        low, high = seen.min(0), seen.max(0)
        pad = BOX_MARGIN * (high - low).max() + 2
        boxes[k] = np.concatenate([low - pad, high + pad])
        found[k] = True
    return boxes, found


def _view(records: tuple[SynthRecord, ...]) -> View:
    rgba = torch.as_tensor(np.stack([r.sample.image for r in records])).permute(0, 3, 1, 2)
    rgba = rgba.float() / 255
    alpha = rgba[:, 3:]
    params = {name: torch.as_tensor(np.stack([r.sample.params[name] for r in records]))
              for name in records[0].sample.params}
    focal, principal = crop_intrinsics(
        _float64([r.sample.focal for r in records]),
        _float64([r.sample.principal_point for r in records]),
        _float64([r.sample.box_center for r in records]),
        _float64([r.sample.box_height for r in records]))
    K = torch.zeros(len(records), 3, 3, dtype=torch.float32)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = focal.float(), focal.float(), 1.0
    K[:, :2, 2] = principal.float()
    return View(rgba[:, :3] * alpha, alpha, params,
                torch.as_tensor(np.stack([r.cam_t for r in records])), K)


def _float64(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.float64)

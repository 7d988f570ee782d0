"""COCO-WholeBody annotations (``coco_wholebody_*_v1.0.json``, the COCO layout with
``keypoints``, ``lefthand_kpts``, ``righthand_kpts``, ``face_kpts`` per person): 2D body, hands
and face, one sample per annotated person.

The keypoints land in the asset's MediaPipe-style sets through the mapping the project's
evaluation uses (``backend.evaluation.coco_wholebody``): COCO-17 into BlazePose's 33, each hand's
21 into the hand sets (same order), the 68 iBUG face points into Face Mesh's 478. No parameters
or 3D joints: the format has none. Crowd annotations and people without a labelled point are
skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.body.asset import Asset
from backend.evaluation.coco_wholebody import COCO17_FROM_POSE33, FACE68_FROM_MESH478, PARTS

from ...errors import TrainingDataError
from ..batch import Sample
from .crop import crop_sample, place_keypoints, read_rgb

# COCO-WholeBody part -> the asset's set, and (part index, set index) pairs.
TARGETS = {
    "body": ("mediapipe_pose33", list(enumerate(COCO17_FROM_POSE33))),
    "left_hand": ("mediapipe_hand_left", [(k, k) for k in range(21)]),
    "right_hand": ("mediapipe_hand_right", [(k, k) for k in range(21)]),
    "face": ("mediapipe_face478", list(enumerate(FACE68_FROM_MESH478))),
}


def _annotation_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("*wholebody*.json")) if path.is_dir() else []
    if not found:
        raise TrainingDataError(f"{path}: no COCO-WholeBody annotation file; give the json "
                                "(coco_wholebody_train_v1.0.json) or a folder holding one "
                                "(*wholebody*.json)")
    return found[0]


class CocoWholeBody:
    """People of a COCO-WholeBody json; images are found next to the json or in ``images``
    (e.g. ``train2017/``) by their ``file_name``."""

    def __init__(self, path: str | Path, asset: Asset, images: str | Path | None = None):
        self.file = _annotation_file(Path(path))
        self.images = Path(images) if images is not None else self.file.parent
        self.asset = asset
        try:
            data = json.loads(self.file.read_text())
            files = {image["id"]: image["file_name"] for image in data["images"]}
            self.people = [(files[item["image_id"]], item) for item in data["annotations"]
                           if not item.get("iscrowd", 0) and _labelled(item)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingDataError(
                f"{self.file}: not COCO-WholeBody annotations ({type(exc).__name__}: {exc}); "
                "expected 'images' (id, file_name) and 'annotations' (image_id, bbox, "
                f"{', '.join(key for key, _ in PARTS.values())})") from None

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, index: int) -> Sample:
        file_name, item = self.people[index]
        x, y, w, h = np.asarray(item["bbox"], np.float64)
        points = {}
        for part, (key, _) in PARTS.items():
            name, pairs = TARGETS[part]
            values = np.asarray(item.get(key, []), np.float64).reshape(-1, 3)
            points.update(place_keypoints(values, {name: pairs}, self.asset) if len(values)
                          else {})
        return crop_sample(read_rgb(self.images / file_name), np.array([x, y, x + w, y + h]),
                           points, f"coco-wholebody/{item.get('id', index)}")


def _labelled(item: dict) -> bool:
    return any(np.asarray(item.get(key, []), np.float64).reshape(-1, 3)[:, 2].any()
               for key, _ in PARTS.values()) and min(item["bbox"][2:]) > 0

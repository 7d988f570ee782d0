"""What every reader does with a person in a full image: the project's crop (the annotation's
box -> ``crop_box`` -> ``crop_person``) and the crop's camera, keypoints from full-image pixels
into normalized crop units (``data/batch.py``), and keypoints of a dataset's convention placed in
the asset's keypoint sets by index maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.body.asset import Asset
from backend.regressor.crop_camera import CROP_ASPECT

from ...errors import TrainingDataError
from ..batch import Sample


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8, or a TrainingDataError naming it."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TrainingDataError(f"{path}: missing or not an image (the annotations list it; "
                                "put the dataset's images where its annotation file expects)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_sample(image: np.ndarray, box_xyxy: np.ndarray, keypoints_px: dict[str, np.ndarray],
                sample_id: str, params: dict[str, np.ndarray] | None = None,
                focal: float | None = None, principal_point: tuple[float, float] | None = None
                ) -> Sample:
    """The crop of the person in ``box_xyxy`` (x0, y0, x1, y1 pixels) and its labels:
    ``keypoints_px`` per set as (K, 3) pixels + confidence. Without the frame's camera, the
    focal length is the larger image side and the principal point the centre, as
    ``backend.regressor.inference`` assumes at run time."""
    import torch

    from backend.regressor.crop_camera import crop_box
    from backend.regressor.inference import crop_person

    center, height = crop_box(torch.as_tensor(np.asarray(box_xyxy, np.float32))[None])
    center, height = center[0].numpy().astype(np.float64), float(height[0])
    rows, cols = image.shape[:2]
    keypoints = {}
    for name, points in keypoints_px.items():
        normalized = np.zeros((len(points), 3), np.float32)
        labelled = points[:, 2] > 0
        normalized[labelled, :2] = (points[labelled, :2] - center) / height
        normalized[labelled, 2] = points[labelled, 2]
        keypoints[name] = normalized
    return Sample(
        image=crop_person(image, center, height),
        focal=float(focal if focal is not None else max(rows, cols)),
        principal_point=principal_point or (cols / 2, rows / 2),
        box_center=(float(center[0]), float(center[1])), box_height=height,
        params=params or {}, keypoints2d=keypoints, id=sample_id)


def box_from_center_scale(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 2) centres and (N,) scales of the SPIN layout (a square of ``scale * 200`` pixels
    around the person) -> (N, 4) x0, y0, x1, y1 boxes of the square's height and the crop's
    3:4, so ``crop_box`` keeps the person's height rather than the square's width."""
    height = np.asarray(scale, np.float64).reshape(-1, 1) * 200
    half = np.concatenate([height * CROP_ASPECT, height], axis=1) / 2
    center = np.asarray(center, np.float64).reshape(-1, 2)
    return np.concatenate([center - half, center + half], axis=1)


def place_keypoints(points: np.ndarray, targets: dict[str, list[tuple[int, int]]],
                    asset: Asset) -> dict[str, np.ndarray]:
    """A dataset's (K, 3) pixel keypoints into the asset's landmark sets: ``targets`` maps a
    set name to (dataset index, set index) pairs; a set the asset lacks is left out, a point
    the dataset does not label keeps confidence 0. Confidences become 1 where labelled."""
    placed = {}
    for name, pairs in targets.items():
        if name not in asset.landmarks or not pairs:
            continue
        values = np.zeros((len(asset.landmarks[name]), 3), np.float64)
        source, target = (np.array(index) for index in zip(*pairs, strict=True))
        values[target] = points[source]
        values[:, 2] = values[:, 2] > 0
        placed[name] = values
    return {name: values for name, values in placed.items() if values[:, 2].any()}


def is_smplx(asset: Asset) -> bool:
    """Whether the asset's joint tree and parameters are SMPL-X's, so SMPL-X parameters (and
    SMPL's, through Eq. 4's offset) are labels for it. The open asset shares the joint names
    but not the rest skeleton or shape space: readers give it keypoints only."""
    return str(asset.meta.get("kind", "")).startswith("smplx")

"""An RGBA person over a background, and random occluders over the result.

A keypoint's confidence means "labelled and visible" (the synthetic renderer's z-buffer test),
so keypoints under an occluder lose their 2D label as self-occluded ones have; the parameter
and 3D terms still supervise the hidden parts. The person mask becomes the visible person:
alpha minus what an occluder covers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import TrainingDataError
from .backgrounds import procedural_background
from .batch import Sample
from .recrop import inside_crop, to_crop_pixels


def composite(sample: Sample, background: np.ndarray) -> Sample:
    """An RGBA ``sample`` (straight alpha) over an RGB ``background`` of the crop's size; the
    person mask, unless the sample has one, is where alpha is at least one half."""
    image = sample.image
    if image.shape[2] != 4:
        raise TrainingDataError(f"{sample.id}: compositing needs an RGBA crop, got "
                                f"{image.shape[2]} channels")
    alpha = image[..., 3:].astype(np.float32) / 255
    blended = image[..., :3] * alpha + background.astype(np.float32) * (1 - alpha)
    mask = sample.mask if sample.mask is not None else image[..., 3] >= 128
    return dataclasses.replace(sample, image=blended.round().astype(np.uint8), mask=mask)


def _occluder_shape(rng: np.random.Generator, size: tuple[int, int], height: int, width: int
                    ) -> np.ndarray:
    """(H, W) bool: a random rectangle, ellipse or blob ``size`` (height, width) pixels big at a
    random place."""
    import cv2

    shape = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(width)), int(rng.integers(height)))
    half = (max(1, size[1] // 2), max(1, size[0] // 2))
    angle = float(rng.uniform(0, 180))
    kind = rng.integers(3)
    if kind == 0:
        corners = cv2.boxPoints((centre, (2 * half[0], 2 * half[1]), angle))
        cv2.fillPoly(shape, [corners.astype(np.int32)], 1)
    elif kind == 1:
        cv2.ellipse(shape, centre, half, angle, 0, 360, 1, -1)
    else:  # a blob: a polygon through points at random radii around the centre
        turns = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
        radii = rng.uniform(0.5, 1.0, len(turns))
        points = np.stack([centre[0] + half[0] * radii * np.cos(turns),
                           centre[1] + half[1] * radii * np.sin(turns)], 1)
        cv2.fillPoly(shape, [points.astype(np.int32)], 1)
    return shape.astype(bool)


def occlude(sample: Sample, rng: np.random.Generator, count: int,
            size: tuple[float, float] = (0.1, 0.4)) -> Sample:
    """``count`` textured occluders, each ``size`` (a fraction of the crop height, drawn
    uniformly) big, pasted at random places over an RGB ``sample``; the keypoints they cover
    lose their label."""
    image = sample.image.copy()
    height, width = image.shape[:2]
    covered = np.zeros((height, width), bool)
    for _ in range(count):
        extent = (rng.uniform(*size, 2) * height).astype(int)
        shape = _occluder_shape(rng, (int(extent[0]), int(extent[1])), height, width)
        texture = procedural_background(rng, (height, width))
        image[shape] = texture[shape]
        covered |= shape
    mask = None if sample.mask is None else sample.mask & ~covered
    keypoints = {name: _hide(points, covered) for name, points in sample.keypoints2d.items()}
    return dataclasses.replace(sample, image=image, mask=mask, keypoints2d=keypoints)


def _hide(points: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Keypoints (K, 3) with the confidence of those on a ``covered`` pixel set to 0."""
    inside = inside_crop(points)
    pixels = np.floor(to_crop_pixels(points[inside, :2])).astype(int)
    height, width = covered.shape
    hidden = np.zeros(len(points), bool)
    hidden[inside] = covered[pixels[:, 1].clip(0, height - 1), pixels[:, 0].clip(0, width - 1)]
    points = points.copy()
    points[hidden, 2] = 0
    return points

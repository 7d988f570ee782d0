"""A sample mirrored left to right, with every label swapped to match (``flip_table``).

A horizontal flip of the crop about its centre is the picture of the whole scene mirrored
through the camera's x = 0 plane (x -> -x in the camera frame), seen by the same camera, in
the crop box mirrored about the principal point: a point at pixel u lands at 2 cx - u, so the
box centre moves from bx to 2 cx - bx and the crop's content is exactly the flipped crop.
Focal length and principal point stay, so the CLIFF camera stays exact even for an off-centre
crop (mirroring the crop about its own centre, as if the principal point were there, would
not be). The mirrored scene is the mirrored body (``flip_table``; the camera mirror commutes
with the model-to-camera axes flip) at the mirrored camera translation (-tx, ty, tz): camera-
frame joints are mirrored (x -> -x) and permuted, keypoints in normalized crop units too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..forward import JOINTS
from .batch import Sample
from .flip_table import POINT_SIGNS, FlipTable, FlipTableError, flip_params


def flip_keypoints(keypoints: dict[str, np.ndarray], table: FlipTable
                   ) -> dict[str, np.ndarray]:
    """Keypoint sets (normalized crop units and confidence) of the mirrored picture; points
    whose mirror the asset cannot tell (``LandmarkFlip.reliable``) lose their label."""
    unknown = set(keypoints) - set(table.landmarks) - {JOINTS}
    if unknown:
        raise FlipTableError(f"keypoint sets {sorted(unknown)} are not the asset's; cannot "
                             f"flip them")
    mirror = np.array([-1, 1, 1])
    flipped = {}
    if JOINTS in keypoints:
        flipped[JOINTS] = keypoints[JOINTS][table.joints] * mirror.astype(keypoints[JOINTS].dtype)
    for name, flip in table.landmarks.items():
        if flip.source in keypoints:
            source = keypoints[flip.source]
            points = source[flip.order] * mirror.astype(source.dtype)
            points[:, 2] *= flip.reliable
            flipped[name] = points
    return flipped


def flip_sample(sample: Sample, table: FlipTable) -> Sample:
    """``sample`` mirrored left to right, labels and camera included."""
    cx = sample.principal_point[0]
    joints3d = None
    if sample.joints3d is not None:
        joints3d = (sample.joints3d[table.joints] * POINT_SIGNS).astype(sample.joints3d.dtype)
    return dataclasses.replace(
        sample, image=np.ascontiguousarray(sample.image[:, ::-1]),
        box_center=(2 * cx - sample.box_center[0], sample.box_center[1]),
        params=flip_params(sample.params, table), joints3d=joints3d,
        keypoints2d=flip_keypoints(sample.keypoints2d, table),
        mask=None if sample.mask is None else np.ascontiguousarray(sample.mask[:, ::-1]))

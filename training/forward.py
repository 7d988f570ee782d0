"""From the network's output vector to what the losses compare: rotations as matrices, the
other parameters as they are, the posed body's joints in the camera frame and every keypoint
set projected into normalized crop units (``data/batch.py``), through the crop's own camera
(CLIFF), so the 2D term is exact for any crop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.body.landmark_model import LandmarkModel
from backend.camera import project, to_camera
from backend.regressor.crop_camera import crop_to_full
from backend.regressor.layout import ParamLayout

from .data.batch import Batch

JOINTS = "joints"  # the keypoint set of the asset's own joints


@dataclass
class Prediction:
    rotations: dict[str, torch.Tensor]  # rotation parameters as (B, J, 3, 3)
    params: dict[str, torch.Tensor]  # every parameter, rotations as axis-angle
    cam_t: torch.Tensor  # (B, 3) camera-frame translation in the full frame
    joints3d: torch.Tensor  # (B, J, 3) camera frame
    keypoints2d: dict[str, torch.Tensor]  # set -> (B, K, 2) normalized crop units


def predict(vector: torch.Tensor, batch: Batch, layout: ParamLayout, body: LandmarkModel,
            keypoint_sets: list[str]) -> Prediction:
    """The network's output for ``batch`` as a posed body seen through each crop's camera.
    ``body`` computes only the joints and the landmark sets the losses use, not the mesh:
    a fraction of the full forward's cost (``backend.body.landmark_model``)."""
    rotations, params, crop_camera = layout.decode_with_matrices(vector)
    cam_t = crop_to_full(crop_camera, batch.box_center, batch.box_height, batch.focal,
                         batch.principal_point)
    landmarks, joints = body(params)
    points = {JOINTS: joints, **landmarks}
    keypoints = {}
    for name in keypoint_sets:
        pixels = project(to_camera(points[name], cam_t), batch.focal[:, None, None],
                         batch.principal_point[:, None])
        keypoints[name] = (pixels - batch.box_center[:, None]) / batch.box_height[:, None, None]
    return Prediction(rotations, params, cam_t, to_camera(joints, cam_t), keypoints)

"""Full-perspective camera of the tracker, in the OpenCV frame (x right, y down, z forward).

A posed body (model frame: Y up, facing +Z) is placed in the camera frame by
``x_cam = MODEL_TO_CAMERA @ x_model + cam_t``: with ``global_orient = 0`` the person stands
upright facing the camera. Intrinsics: one focal length (pixels) and the principal point.
"""

from __future__ import annotations

import torch

MODEL_TO_CAMERA = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))


def to_camera(points: torch.Tensor, cam_t: torch.Tensor) -> torch.Tensor:
    """(T, K, 3) model-frame points of each frame to the camera frame."""
    rotation = torch.tensor(MODEL_TO_CAMERA, dtype=points.dtype, device=points.device)
    return points @ rotation.T + cam_t[:, None]


def project(points: torch.Tensor, focal: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (..., 3) to pixels (..., 2); depth clamped away from zero."""
    depth = points[..., 2:].clamp_min(1e-3)
    return focal * points[..., :2] / depth + center

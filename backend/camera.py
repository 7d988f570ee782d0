"""The one place where the model frame meets the camera: the OpenCV camera frame (x right,
y down, z forward) and the full-perspective projection used by the tracker and the renderer.

A posed body (model frame: Y up, facing +Z) is placed in the camera frame by
``x_cam = MODEL_TO_CAMERA @ x_model + cam_t``: with ``global_orient = 0`` the person stands
upright facing the camera. Intrinsics: one focal length (pixels) and the principal point.
"""

from __future__ import annotations

import math

import torch

from .conventions import MODEL_TO_CAMERA


def to_camera(points: torch.Tensor, cam_t: torch.Tensor) -> torch.Tensor:
    """(T, K, 3) model-frame points of each frame to the camera frame."""
    rotation = torch.tensor(MODEL_TO_CAMERA, dtype=points.dtype, device=points.device)
    return points @ rotation.T + cam_t[:, None]


def view_rotation(yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    """Model frame -> camera frame for a camera facing the person, the body turned by ``yaw``
    degrees about its up axis and nodded by ``pitch`` degrees (float64)."""
    y, p = math.radians(yaw), math.radians(pitch)
    turn = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]],
                        dtype=torch.float64)
    nod = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]],
                       dtype=torch.float64)
    return torch.tensor(MODEL_TO_CAMERA, dtype=torch.float64) @ nod @ turn


def project(points: torch.Tensor, focal: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (..., 3) to pixels (..., 2); depth clamped away from zero."""
    depth = points[..., 2:].clamp_min(1e-3)
    return focal * points[..., :2] / depth + center


def principal_point(width: int, height: int, center: tuple[float, float] | None = None
                    ) -> tuple[float, float]:
    """The principal point in pixels: ``center`` when the camera's is known, else the image
    centre."""
    if center is None:
        return width / 2, height / 2
    return float(center[0]), float(center[1])

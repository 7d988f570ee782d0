"""Person crops and the camera: the network sees a 256x192 crop and predicts a weak-perspective
camera (scale s, shift tx, ty) in it; CLIFF's conversion turns that into a full-perspective
translation in the original frame, so the body projects onto the full image where the crop
saw it.

A crop is given by its box in the full image: ``center`` (x, y) and ``height`` in pixels (its
width is height * 3/4). In the crop, a camera-frame point X (backend.camera's axes: x right, y
down, z forward) lands at ``center + height / 2 * s * (X_xy + t)``; a pinhole camera of focal f
at ``T = (tx + 2 (cx_box - cx) / (s h), ty + 2 (cy_box - cy) / (s h), 2 f / (s h))``, (cx, cy)
its principal point, puts it at the same pixel up to the body's own depth relief.
"""

from __future__ import annotations

import torch

from .vit import INPUT_SIZE

CROP_ASPECT = INPUT_SIZE[1] / INPUT_SIZE[0]  # width / height


def crop_box(box: torch.Tensor, padding: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4) person boxes x0, y0, x1, y1 -> crop centers (B, 2) and heights (B,): the box
    grown by ``padding`` and widened or heightened to the crop's 3:4."""
    center = (box[:, :2] + box[:, 2:]) / 2
    size = box[:, 2:] - box[:, :2]
    height = torch.maximum(size[:, 1], size[:, 0] / CROP_ASPECT) * padding
    return center, height


def crop_to_full(crop_camera: torch.Tensor, center: torch.Tensor, height: torch.Tensor,
                 focal: torch.Tensor, principal_point: torch.Tensor) -> torch.Tensor:
    """(B, 3) crop cameras (s, tx, ty) -> (B, 3) camera-frame translations in the full image
    of focal ``focal`` (B,) and principal point ``principal_point`` (B, 2) (the image centre
    unless the camera's is known)."""
    scale = crop_camera[:, 0].clamp_min(1e-4) * height
    shift = 2 * (center - principal_point) / scale[:, None]
    return torch.cat([crop_camera[:, 1:] + shift, (2 * focal / scale)[:, None]], dim=1)


def full_to_crop(cam_t: torch.Tensor, center: torch.Tensor, height: torch.Tensor,
                 focal: torch.Tensor, principal_point: torch.Tensor) -> torch.Tensor:
    """``crop_to_full``'s inverse: (B, 3) camera-frame translations -> (B, 3) crop cameras
    (s, tx, ty), the regressor's target for a body placed at ``cam_t``."""
    scale = 2 * focal / cam_t[:, 2]  # s * h
    shift = 2 * (center - principal_point) / scale[:, None]
    return torch.cat([(scale / height)[:, None], cam_t[:, :2] - shift], dim=1)


def crop_intrinsics(focal: torch.Tensor, principal_point: torch.Tensor, center: torch.Tensor,
                    height: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The full camera seen through the crop, in crop pixels: focal (B,) and principal point
    (B, 2) (synthetic samples are rendered straight into the crop with it)."""
    zoom = INPUT_SIZE[0] / height
    origin = center - torch.stack([height * CROP_ASPECT, height], dim=1) / 2
    return focal * zoom, (principal_point - origin) * zoom[:, None]

"""Render a synthetic clip of the painted open model to video frames: footage whose true motion
is known, for end-to-end tests, benchmarks and the demo (no third-party footage shipped)."""

from __future__ import annotations

import numpy as np
import torch

from ..body.model import BodyModel
from ..camera import to_camera
from ..renderer.mesh_raster import project, rasterize, shade_smooth


def render_frames(model: BodyModel, params: dict[str, torch.Tensor], cam_t: torch.Tensor,
                  focal: float, size: tuple[int, int], colors: torch.Tensor,
                  background: float = 0.75) -> list[np.ndarray]:
    """RGB uint8 frames of the posed, painted model seen through the tracker's camera."""
    width, height = size
    with torch.no_grad():
        vertices = model.converted(torch.float64)(params).vertices
    frames = []
    for t in range(vertices.shape[0]):
        camera = to_camera(vertices[t:t + 1], cam_t[t:t + 1].double())[0]
        fragments = rasterize(project(camera, focal, (width / 2, height / 2)), model.faces,
                              height, width)
        image = shade_smooth(fragments, camera, model.faces, colors, background=background)
        frames.append((image.numpy() * 255).round().astype(np.uint8))
    return frames

"""Draw a fitted clip's mesh over its footage (``backend fit --overlay OUT.mp4``) so a person can
judge the alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..body.model import BodyModel
from ..camera import to_camera
from ..perception.frames import open_footage
from ..renderer.mesh_raster import project, rasterize, shade
from ..results import ClipResults


def render_overlay_frame(image: np.ndarray, vertices: torch.Tensor, faces: torch.Tensor,
                         cam_t: torch.Tensor, focal: float, center: tuple[float, float],
                         alpha: float = 0.6) -> np.ndarray:
    """The footage frame with the posed mesh (model frame) drawn over it."""
    height, width = image.shape[:2]
    camera = to_camera(vertices[None], cam_t[None])[0]
    fragments = rasterize(project(camera, focal, center), faces, height, width)
    shaded = shade(fragments, camera, faces, color=(0.55, 0.75, 0.95)).numpy()
    hit = (fragments.face >= 0).numpy()[..., None]
    blended = np.where(hit, (1 - alpha) * image / 255.0 + alpha * shaded, image / 255.0)
    return (blended * 255).round().astype(np.uint8)


def write_overlay(results: ClipResults, model: BodyModel, out: str | Path,
                  footage: str | Path | None = None) -> Path:
    import cv2

    footage = footage or results.info["footage"]
    params = {k: torch.as_tensor(v) for k, v in results.params.items()}
    row = {int(f): i for i, f in enumerate(results.frames)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = open_footage(footage)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), source.fps,
                             (source.width, source.height))
    try:
        for frame in source:
            image = frame.image
            if frame.index in row:
                i = row[frame.index]
                frame_params = {k: v[i:i + 1] if v.shape[0] > 1 else v for k, v in params.items()}
                with torch.no_grad():
                    vertices = model(frame_params).vertices[0]
                image = render_overlay_frame(image, vertices, model.faces,
                                             torch.as_tensor(results.cam_t[i]), results.focal,
                                             results.center)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out

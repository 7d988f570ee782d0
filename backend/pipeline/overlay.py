"""Draw a fitted clip's mesh over its footage (``backend fit --overlay OUT.mp4``) so a person can
judge the alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..body.model import BodyModel
from ..camera import to_camera
from ..perception.frames import open_footage
from ..renderer.mesh_raster import face_intensity, project, visible_faces
from ..results import ClipResults

COLOR = (0.55, 0.75, 0.95)  # the mesh's light blue
FORWARD_CHUNK = 64  # frames per body-model forward when writing a clip


def render_overlay_frame(image: np.ndarray, vertices: torch.Tensor, faces: torch.Tensor,
                         cam_t: torch.Tensor, focal: float, center: tuple[float, float],
                         alpha: float = 0.6) -> np.ndarray:
    """The footage frame with the posed mesh (model frame), flat-shaded, blended over it.

    Only the pixels the mesh covers are touched, so the cost follows the mesh's size on screen."""
    height, width = image.shape[:2]
    camera = to_camera(vertices[None], cam_t[None])[0]
    face, box = visible_faces(project(camera, focal, center), faces, height, width)
    hit = face >= 0
    colors = face_intensity(camera, faces)[:, None] * torch.tensor(COLOR, dtype=camera.dtype)
    shaded = 255 * colors[face[hit]].numpy()
    out = image.copy()
    region, hit = out[box], hit.numpy()  # a view: writing it draws into the copy
    region[hit] = ((1 - alpha) * region[hit] + alpha * shaded).round().astype(np.uint8)
    return out


def write_overlay(results: ClipResults, model: BodyModel, out: str | Path,
                  footage: str | Path | None = None) -> Path:
    import cv2

    footage = footage or results.info["footage"]
    params = {k: torch.as_tensor(v) for k, v in results.params.items()}
    row = {int(f): i for i, f in enumerate(results.frames)}
    posed: dict[int, torch.Tensor] = {}  # the vertices of one chunk of rows, by chunk number

    def vertices(i: int) -> torch.Tensor:
        chunk = i // FORWARD_CHUNK
        if chunk not in posed:
            rows = slice(chunk * FORWARD_CHUNK, (chunk + 1) * FORWARD_CHUNK)
            with torch.no_grad():
                posed.clear()
                posed[chunk] = model({k: v[rows] if v.shape[0] > 1 else v
                                      for k, v in params.items()}).vertices
        return posed[chunk][i % FORWARD_CHUNK]

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
                image = render_overlay_frame(image, vertices(i), model.faces,
                                             torch.as_tensor(results.cam_t[i]), results.focal,
                                             results.center)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out

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
ALPHA = 0.6  # the mesh's share of a covered pixel
FORWARD_CHUNK = 64  # frames per body-model forward when writing a clip


def meshes_on_screen(vertices: torch.Tensor, cam_t: torch.Tensor, faces: torch.Tensor,
                     focal: float, center: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Screen coordinates (T, V, 3) and flat colours (T, F, 3) in 0-255 of T posed meshes (model
    frame): for many frames at once, a few large operations rather than many small ones."""
    camera = to_camera(vertices.double(), cam_t.double())
    colors = 255 * face_intensity(camera, faces)[..., None] * torch.tensor(COLOR)
    return project(camera, focal, center).numpy(), colors.numpy()


def draw_mesh(image: np.ndarray, screen: np.ndarray, colors: np.ndarray, faces: np.ndarray,
              alpha: float = ALPHA) -> np.ndarray:
    """A copy of the frame with one mesh from ``meshes_on_screen`` blended over it, only where
    the mesh is."""
    face, box = visible_faces(screen, faces, *image.shape[:2])
    hit = face >= 0
    out = image.copy()
    region = out[box]  # a view: writing it draws into the copy
    region[hit] = ((1 - alpha) * region[hit] + alpha * colors[face[hit]]).round().astype(np.uint8)
    return out


def write_overlay(results: ClipResults, model: BodyModel, out: str | Path,
                  footage: str | Path | None = None) -> Path:
    import cv2

    footage = footage or results.info["footage"]
    params = {k: torch.as_tensor(v) for k, v in results.params.items()}
    cam_t = torch.as_tensor(results.cam_t)
    faces = model.faces.numpy()
    row = {int(f): i for i, f in enumerate(results.frames)}
    chunks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # one chunk of rows, by its number

    def on_screen(i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i's mesh on screen, from a body-model forward over its whole chunk of rows."""
        chunk = i // FORWARD_CHUNK
        if chunk not in chunks:
            rows = slice(chunk * FORWARD_CHUNK, (chunk + 1) * FORWARD_CHUNK)
            chunks.clear()
            with torch.no_grad():
                vertices = model({k: v[rows] if v.shape[0] > 1 else v
                                  for k, v in params.items()}).vertices
                chunks[chunk] = meshes_on_screen(vertices, cam_t[rows], model.faces,
                                                  results.focal, results.center)
        screen, colors = chunks[chunk]
        return screen[i % FORWARD_CHUNK], colors[i % FORWARD_CHUNK]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = open_footage(footage)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), source.fps,
                             (source.width, source.height))
    try:
        for frame in source:
            image = frame.image
            if frame.index in row:
                image = draw_mesh(image, *on_screen(row[frame.index]), faces)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out

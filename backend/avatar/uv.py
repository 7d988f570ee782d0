"""The UV map as a set of surface points: each texel inside a UV triangle becomes an anchor
(triangle + barycentric coordinates) on the mesh, found by rasterizing the UV layout with the
project's triangle rasterizer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..renderer.mesh_raster import rasterize


@dataclass
class UVTexels:
    """The texels of a size x size UV map that lie on the mesh."""

    size: int
    face_ids: np.ndarray  # (T,) the mesh triangle under each texel
    bary: np.ndarray  # (T, 3) its barycentric coordinates there
    rows: np.ndarray  # (T,) texel row (v = 1 at row 0)
    cols: np.ndarray  # (T,) texel column


def uv_texels(uv_coords: np.ndarray, uv_faces: np.ndarray, size: int) -> UVTexels:
    """Texels whose centres fall inside a triangle of the UV layout (uv_coords (U, 2) in [0, 1],
    uv_faces (F, 3), one per mesh triangle, in the mesh's triangle order)."""
    uv = torch.as_tensor(uv_coords, dtype=torch.float64)
    screen = torch.stack([uv[:, 0] * size, (1 - uv[:, 1]) * size, torch.ones(len(uv),
                                                                              dtype=uv.dtype)], -1)
    fragments = rasterize(screen, torch.as_tensor(uv_faces, dtype=torch.int64), size, size)
    rows, cols = np.nonzero(fragments.face.numpy() >= 0)
    return UVTexels(size, fragments.face.numpy()[rows, cols],
                    fragments.bary.numpy()[rows, cols], rows, cols)

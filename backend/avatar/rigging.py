"""Gaussians that ride on the mesh: each belongs to a triangle and keeps its place, orientation
and size relative to that triangle's local frame as the body moves (GUAVA Eq. 3):

    mean = size · R · offset + anchor,   rotation = R · r,   scales = size · s

where the anchor is a point given by barycentric coordinates, R = [e, n, e × n] is built from
the triangle's first edge e and normal n, and size is the mean of that edge's length and the
triangle's height over it. Offsets and scales are therefore in units of the triangle, so a
Gaussian follows stretching skin as well as rigid motion.

Both of the avatar's kinds are rigged this way: a UV Gaussian at its texel's surface point, and
a template Gaussian at its vertex (one of the vertex's triangles, barycentric one-hot). A
vertex's blended skinning matrix is not a rotation; the surface frame is, and it also follows
pose correctives and expressions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..body.rotations import matrix_to_quaternion, quaternion_multiply


def triangle_frames(vertices: torch.Tensor, faces: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per triangle of (B, V, 3) vertices: its frame (B, F, 3, 3) (columns: first edge, normal,
    their cross product) and its size (B, F)."""
    corners = vertices[:, faces]  # (B, F, 3, 3)
    edge = corners[:, :, 1] - corners[:, :, 0]
    normal = torch.cross(edge, corners[:, :, 2] - corners[:, :, 0], dim=-1)
    edge_length = edge.norm(dim=-1)
    height = normal.norm(dim=-1) / edge_length.clamp_min(1e-12)
    e = torch.nn.functional.normalize(edge, dim=-1)
    n = torch.nn.functional.normalize(normal, dim=-1)
    frames = torch.stack([e, n, torch.cross(e, n, dim=-1)], dim=-1)
    return frames, 0.5 * (edge_length + height)


def surface_points(vertices: torch.Tensor, faces: torch.Tensor, face_ids: torch.Tensor,
                   bary: torch.Tensor) -> torch.Tensor:
    """Points (B, G, 3) at barycentric coordinates (G, 3) of triangles ``face_ids`` (G,)."""
    corners = vertices[:, faces[face_ids]]  # (B, G, 3, 3)
    return (bary[None, :, :, None].to(vertices.dtype) * corners).sum(2)


def rig(vertices: torch.Tensor, faces: torch.Tensor, face_ids: torch.Tensor,
        bary: torch.Tensor, offsets: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place Gaussians given in their triangles' frames on a posed mesh.

    vertices (B, V, 3); faces (F, 3); face_ids (G,) and bary (G, 3): each Gaussian's anchor;
    offsets (B, G, 3), quats (B, G, 4) (w x y z) and scales (B, G, 3) in triangle units.
    Returns means, quats and scales (B, G, ...) in the mesh's space, ready to rasterize.
    """
    frames, sizes = triangle_frames(vertices, faces)
    frames, sizes = frames[:, face_ids], sizes[:, face_ids, None]
    anchors = surface_points(vertices, faces, face_ids, bary)
    means = anchors + sizes * (frames @ offsets[..., None])[..., 0]
    return means, quaternion_multiply(matrix_to_quaternion(frames), quats), sizes * scales


def vertex_anchors(faces: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(face_ids, bary) putting one anchor on each vertex: a triangle it belongs to, with
    barycentric weight 1 on it."""
    face_ids = np.full(vertex_count, -1)
    corner = np.zeros(vertex_count, dtype=int)
    for k in range(3):  # the last triangle listed wins; any of a vertex's triangles will do
        face_ids[faces[:, k]] = np.arange(len(faces))
        corner[faces[:, k]] = k
    if (face_ids < 0).any():
        raise ValueError(f"{int((face_ids < 0).sum())} vertices belong to no triangle")
    return face_ids, np.eye(3)[corner]

"""A small z-buffer triangle rasterizer in torch (CPU or CUDA), for previews and for mapping image
points back onto the mesh: per pixel, the visible triangle, its barycentric coordinates and depth.

Triangles are binned by the size of their pixel bounding box, and each bin is tested against all
of its candidate pixels at once, so there is no per-triangle Python loop. ``visible_faces`` is the
cheap variant for drawing a mesh over every frame of a clip: the nearest triangle per pixel only,
in numpy, single-threaded: its ~30 array operations a frame are too small to gain from torch's
threads, and on a shared CPU each waits for both threads to be scheduled (10x slower at 2 threads
on this machine while other jobs ran).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import camera

_BIN_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class Fragments:
    face: torch.Tensor  # (H, W) visible triangle per pixel, -1 for background
    bary: torch.Tensor  # (H, W, 3) screen-space barycentric coordinates in that triangle
    depth: torch.Tensor  # (H, W) camera depth, +inf for background


def project(points: torch.Tensor, focal: float, center: tuple[float, float]) -> torch.Tensor:
    """Screen coordinates (..., 3) (u, v, depth) of camera-frame points (..., 3) (x right, y down,
    z forward)."""
    pixels = camera.project(points, torch.tensor(focal, dtype=points.dtype),
                            torch.tensor(center, dtype=points.dtype))
    return torch.cat([pixels, points[..., 2:]], dim=-1)


def rasterize(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> Fragments:
    """screen: (V, 3) pixel coordinates (u right, v down; pixel centres at +0.5) and depth."""
    device = screen.device
    tri = screen[faces]  # (F, 3, 3)
    in_front = (tri[:, :, 2] > 1e-6).all(1)
    low = tri[:, :, :2].min(1).values.floor().clamp_min(0)
    high = tri[:, :, :2].max(1).values.ceil()
    high[:, 0].clamp_(max=width - 1)
    high[:, 1].clamp_(max=height - 1)
    extent = (high - low + 1).max(1).values
    visible = in_front & (extent > 0)

    pixel_ids, depths, face_ids, barys = [], [], [], []
    previous = 0
    for size in _BIN_SIZES:
        chosen = torch.nonzero(visible & (extent > previous) & (extent <= size)).squeeze(1)
        previous = size
        if len(chosen) == 0:
            continue
        offsets = torch.arange(size, device=device, dtype=screen.dtype)
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        px = low[chosen, 0, None] + ox.reshape(1, -1)  # (n, size*size)
        py = low[chosen, 1, None] + oy.reshape(1, -1)
        bary = _barycentric(tri[chosen], px + 0.5, py + 0.5)
        inside = (bary >= -1e-7).all(-1) & (px < width) & (py < height)
        depth = (bary * tri[chosen, None, :, 2]).sum(-1)
        keep = torch.nonzero(inside, as_tuple=True)
        pixel_ids.append((py[keep] * width + px[keep]).long())
        depths.append(depth[keep])
        face_ids.append(chosen[keep[0]])
        barys.append(bary[keep])

    face = torch.full((height * width,), -1, dtype=torch.long, device=device)
    bary_image = torch.zeros(height * width, 3, dtype=screen.dtype, device=device)
    zbuffer = torch.full((height * width,), float("inf"), dtype=screen.dtype, device=device)
    if pixel_ids:
        pixel, depth = torch.cat(pixel_ids), torch.cat(depths)
        zbuffer.scatter_reduce_(0, pixel, depth, reduce="amin")
        winner = depth <= zbuffer[pixel]
        face[pixel[winner]] = torch.cat(face_ids)[winner]
        bary_image[pixel[winner]] = torch.cat(barys)[winner]
    return Fragments(face.view(height, width), bary_image.view(height, width, 3),
                     zbuffer.view(height, width))


def visible_faces(screen: np.ndarray, faces: np.ndarray, height: int, width: int
                  ) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The nearest triangle per pixel, -1 for background, over the mesh's box on screen, and that
    box (rows, columns) in the (height, width) frame: what ``rasterize`` finds for a closed,
    consistently wound mesh (a body model's), cheaply enough to draw every frame of a clip.

    ``screen``: (V, 3) pixel coordinates and depth as ``project`` gives them. Faces turned away
    from the camera are dropped (the nearest surface is never one), each triangle is tested only
    against the pixels of its own bounding box (``rasterize`` pads boxes to powers of two), in
    float32, and no barycentrics are kept."""
    u, v, depth = screen.T[:, faces]  # (F, 3) each: the corners' pixel coordinates and depth
    # Twice each face's signed area on screen; z0 z1 z2 times it is the face's camera-frame
    # det(v0, v1, v2), whose sum is 6x the mesh's signed volume: its sign says which winding
    # faces outward.
    area = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0])
    outward = np.sign((depth.prod(1) * area).sum())
    front = np.flatnonzero((area * outward < 0) & (depth > 1e-6).all(1))
    u, v = u[front], v[front]
    # Each face's first and last pixels (centres at +0.5) inside its box and the frame.
    left = np.maximum(np.ceil(u.min(1) - 0.5), 0).astype(np.int64)
    top = np.maximum(np.ceil(v.min(1) - 0.5), 0).astype(np.int64)
    right = np.minimum(np.floor(u.max(1) - 0.5), width - 1).astype(np.int64)
    bottom = np.minimum(np.floor(v.max(1) - 0.5), height - 1).astype(np.int64)
    on_frame = np.flatnonzero((right >= left) & (bottom >= top))
    if len(on_frame) == 0:
        return np.full((0, 0), -1, np.int64), (slice(0, 0), slice(0, 0))
    chosen = front[on_frame]
    u, v, depth, area = u[on_frame], v[on_frame], depth[chosen], area[chosen]
    left, top, right, bottom = (left[on_frame], top[on_frame], right[on_frame],
                                bottom[on_frame])
    # Barycentric coordinate i = (a_i u + b_i v + c_i) / area, from the edge opposite corner i;
    # depth is interpolated with the same weights.
    j, k = [1, 2, 0], [2, 0, 1]
    a = (v[:, j] - v[:, k]) / area[:, None]
    b = (u[:, k] - u[:, j]) / area[:, None]
    c = (u[:, j] * v[:, k] - u[:, k] * v[:, j]) / area[:, None]
    planes = np.stack([a[:, 0], b[:, 0], c[:, 0], a[:, 1], b[:, 1], c[:, 1],
                       (a * depth).sum(1), (b * depth).sum(1), (c * depth).sum(1)])
    planes = planes.astype(np.float32)  # (9, n): rows of (u, v, 1) coefficients
    # One column per (face, pixel of its box).
    box_left, box_top = left.min(), top.min()
    box_height, box_width = bottom.max() - box_top + 1, right.max() - box_left + 1
    face_width = right - left + 1
    counts = face_width * (bottom - top + 1)
    owner = np.repeat(np.arange(len(chosen)), counts)
    local = np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]
    row, column = np.divmod(local, face_width[owner])
    px, py = left[owner] + column, top[owner] + row
    x, y = (px + 0.5).astype(np.float32), (py + 0.5).astype(np.float32)
    plane = planes[:, owner]
    w0 = plane[0] * x + plane[1] * y + plane[2]
    w1 = plane[3] * x + plane[4] * y + plane[5]
    hit = np.flatnonzero((w0 >= -1e-5) & (w1 >= -1e-5) & (w0 + w1 <= 1 + 1e-5))
    pixel_depth = plane[6, hit] * x[hit] + plane[7, hit] * y[hit] + plane[8, hit]
    pixel = (py[hit] - box_top) * box_width + px[hit] - box_left
    zbuffer = np.full(box_height * box_width, np.inf, np.float32)
    np.minimum.at(zbuffer, pixel, pixel_depth)
    nearest = pixel_depth <= zbuffer[pixel]
    face = np.full(box_height * box_width, -1, np.int64)
    face[pixel[nearest]] = chosen[owner[hit[nearest]]]
    return (face.reshape(box_height, box_width),
            (slice(box_top, box_top + box_height), slice(box_left, box_left + box_width)))


def nearest_fragments(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int
                      ) -> Fragments:
    """``rasterize``'s fragments for a closed, consistently wound mesh (a body model's), from
    ``visible_faces``: the nearest triangle per pixel, then barycentrics and depth for the
    covered pixels only. Many times cheaper than ``rasterize`` (synthetic training renders)."""
    box_faces, (rows, columns) = visible_faces(screen.detach().cpu().numpy(),
                                               faces.cpu().numpy(), height, width)
    face = torch.full((height, width), -1, dtype=torch.long, device=screen.device)
    face[rows, columns] = torch.from_numpy(box_faces).to(screen.device)
    bary = torch.zeros(height, width, 3, dtype=screen.dtype, device=screen.device)
    depth = torch.full((height, width), float("inf"), dtype=screen.dtype, device=screen.device)
    hit = face >= 0
    pixel = torch.nonzero(hit).to(screen.dtype) + 0.5  # (n, 2) row, column of pixel centres
    tri = screen[faces[face[hit]]]  # (n, 3, 3)
    bary[hit] = _barycentric(tri, pixel[:, 1:], pixel[:, :1])[:, 0]
    depth[hit] = (bary[hit] * tri[:, :, 2]).sum(-1)
    return Fragments(face, bary, depth)


def _barycentric(tri: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates (n, m, 3) of points (n, m) in triangles (n, 3, >=2)."""
    x0, y0 = tri[:, 0, 0, None], tri[:, 0, 1, None]
    x1, y1 = tri[:, 1, 0, None], tri[:, 1, 1, None]
    x2, y2 = tri[:, 2, 0, None], tri[:, 2, 1, None]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    area = torch.where(area.abs() < 1e-12, torch.full_like(area, float("nan")), area)
    w1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / area
    w2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / area
    return torch.stack([1 - w1 - w2, w1, w2], dim=-1).nan_to_num(-1.0)


def interpolate(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor
                ) -> torch.Tensor:
    """Per-pixel (H, W, C) barycentric blend of per-vertex ``attributes`` (V, C); 0 off the mesh."""
    hit = fragments.face >= 0
    out = torch.zeros(*fragments.face.shape, attributes.shape[1], dtype=attributes.dtype,
                      device=attributes.device)
    corners = attributes[faces[fragments.face[hit]]]  # (n, 3, C)
    out[hit] = (corners * fragments.bary[hit][:, :, None].to(attributes.dtype)).sum(1)
    return out


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (V, 3)."""
    tri = vertices[faces]
    face_normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1),
                                                    face_normals.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(normals, dim=1)


def shade_smooth(fragments: Fragments, vertices: torch.Tensor, faces: torch.Tensor,
                 colors: torch.Tensor, light: tuple[float, float, float] = (0.3, -0.5, -1.0),
                 background: float = 1.0) -> torch.Tensor:
    """Lambert shading (H, W, 3) of per-vertex ``colors`` with interpolated normals, in camera
    frame; ``light`` points toward the light."""
    normals = interpolate(fragments, faces, vertex_normals(vertices, faces))
    normals = torch.nn.functional.normalize(normals, dim=-1)
    normals = torch.where(normals[..., 2:] > 0, -normals, normals)  # the side facing the camera
    direction = torch.nn.functional.normalize(torch.tensor(light, dtype=vertices.dtype), dim=0)
    intensity = 0.3 + 0.7 * (normals @ direction).clamp_min(0)
    image = interpolate(fragments, faces, colors.to(vertices.dtype)) * intensity[..., None]
    return torch.where((fragments.face >= 0)[..., None], image,
                       torch.full_like(image, background))


def shade(fragments: Fragments, vertices: torch.Tensor, faces: torch.Tensor,
          color: tuple[float, float, float], light: tuple[float, float, float] = (0.3, -0.5, -1.0),
          background: float = 1.0) -> torch.Tensor:
    """Flat Lambert shading (H, W, 3) in [0, 1] of camera-frame ``vertices``; ``light`` points
    from the surface toward the light (camera frame: the default is up, right, toward the
    camera)."""
    intensity = face_intensity(vertices, faces, light)
    hit = fragments.face >= 0
    image = torch.full((*fragments.face.shape, 3), background, dtype=vertices.dtype)
    image[hit] = intensity[fragments.face[hit]][:, None] * torch.tensor(color,
                                                                         dtype=vertices.dtype)
    return image


def face_intensity(vertices: torch.Tensor, faces: torch.Tensor,
                   light: tuple[float, float, float] = (0.3, -0.5, -1.0)) -> torch.Tensor:
    """Flat Lambert intensity (..., F) in [0.25, 1] of each face of camera-frame ``vertices``
    (..., V, 3)."""
    tri = vertices[..., faces, :]
    normal = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    normal = torch.nn.functional.normalize(normal, dim=-1)
    direction = torch.nn.functional.normalize(torch.tensor(light, dtype=vertices.dtype), dim=0)
    # Faces may be wound either way: light the side facing the camera.
    facing = torch.where(normal[..., 2:] > 0, -normal, normal)
    return 0.25 + 0.75 * (facing @ direction).clamp_min(0)

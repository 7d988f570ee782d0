"""Embed a detector's landmarks in a body model: render the painted model from several views,
expressions and shapes, run the detector, carry every detected point back onto the mesh triangle
under it, and keep a robust average per landmark (on the template), with its spread.

The detector is any callable image -> (K, 2) pixel coordinates (or None when it finds nothing),
so this module knows nothing of MediaPipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...camera import view_rotation
from ...renderer.mesh_raster import project, rasterize, shade_smooth
from ..model import BodyModel

Detector = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass
class View:
    yaw: float = 0.0  # degrees, turning the body about its up axis
    pitch: float = 0.0  # degrees, nodding
    params: dict | None = None  # body-model parameters (default: rest)
    # Landmarks this view cannot place: e.g. the inner lips when the mouth is closed, where a
    # detection cannot tell the upper lip from the lower.
    skip: frozenset[int] = frozenset()


@dataclass
class Embedding:
    triangles: np.ndarray  # (K,) template triangle of each landmark
    bary: np.ndarray  # (K, 3)
    spread_mean_mm: np.ndarray  # (K,) mean distance of the back-projections from the result
    spread_max_mm: np.ndarray  # (K,)
    samples: np.ndarray  # (K,) back-projections kept per landmark
    views_detected: int
    views: int


def render_view(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
                focus: torch.Tensor, view: View, size: int, fill: float = 0.6):
    """Render a painted mesh framed on the ``focus`` vertices; returns the image (uint8), the
    fragments, the camera-frame vertices and the focal length."""
    points = vertices.double() @ view_rotation(view.yaw, view.pitch).T
    framed = points[focus]
    middle = (framed.min(0).values + framed.max(0).values) / 2
    extent = float((framed.max(0).values - framed.min(0).values)[:2].max())
    focal = 2.0 * size
    distance = focal * extent / (fill * size)
    camera = points - middle + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
    fragments = rasterize(project(camera, focal, (size / 2, size / 2)), faces, size, size)
    image = (shade_smooth(fragments, camera, faces, colors).numpy() * 255).round()
    return image.astype(np.uint8), fragments, camera, focal


def _facing_camera(camera: torch.Tensor, faces: torch.Tensor, outward: float) -> torch.Tensor:
    """Per-face cosine between the outward normal and the direction to the camera."""
    tri = camera[faces]
    normal = torch.nn.functional.normalize(
        torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=1) * outward
    to_camera = -torch.nn.functional.normalize(tri.mean(1), dim=1)
    return (normal * to_camera).sum(1)


def _outward_sign(vertices: np.ndarray, faces: np.ndarray) -> float:
    """+1 if the faces wind counter-clockwise seen from outside, else -1."""
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return 1.0 if (normal * (tri.mean(1) - vertices.mean(0))).sum() > 0 else -1.0


def _screen_bary(screen: np.ndarray, point: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1), (x2, y2) = screen[:, :2]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    w1 = ((point[0] - x0) * (y2 - y0) - (x2 - x0) * (point[1] - y0)) / area
    w2 = ((x1 - x0) * (point[1] - y0) - (point[0] - x0) * (y1 - y0)) / area
    bary = np.clip([1 - w1 - w2, w1, w2], 0, None)
    return bary / bary.sum()


def embed(model: BodyModel, colors: torch.Tensor, focus: torch.Tensor, views: list[View],
          detect: Detector, num_landmarks: int, size: int = 512, min_facing: float = 0.25,
          surfaces: list[np.ndarray] | None = None) -> Embedding:
    """Back-project ``detect``'s landmarks from every view onto the template and average them.

    ``surfaces``: per landmark, (F,) bool, the triangles it may lie on (default: all). A
    detector draws the eyelids' and lips' edges where it sees them, often on the eyeball or
    inside the mouth just past the edge; such points are kept and then placed on the nearest
    allowed triangle (the lid or lip itself), which moves as the face does."""
    faces = model.faces
    template = model.v_template.double()
    outward = _outward_sign(template.numpy(), faces.numpy())
    samples: list[list[np.ndarray]] = [[] for _ in range(num_landmarks)]
    detected = 0
    with torch.inference_mode():
        for view in views:
            vertices = model(view.params or {}).vertices[0].double()
            image, fragments, camera, focal = render_view(vertices, faces, colors, focus, view,
                                                          size)
            points = detect(image)
            if points is None:
                continue
            detected += 1
            facing = _facing_camera(camera, faces, outward).numpy()
            screen = project(camera, focal, (size / 2, size / 2)).numpy()
            face_image = fragments.face.numpy()
            for k, (u, v) in enumerate(points[:num_landmarks]):
                if k in view.skip:
                    continue
                x, y = int(u), int(v)
                if not (0 <= x < size and 0 <= y < size) or face_image[y, x] < 0:
                    continue
                triangle = face_image[y, x]
                if facing[triangle] < min_facing:  # seen edge-on or from behind: unreliable
                    continue
                bary = _screen_bary(screen[faces[triangle].numpy()], np.array([u, v]))
                samples[k].append(bary @ template[faces[triangle]].numpy())
    everywhere = np.ones(len(faces), bool)
    return _aggregate(samples, template.numpy(), faces.numpy(),
                      surfaces or [everywhere] * num_landmarks, detected, len(views))


def _aggregate(samples: list[list[np.ndarray]], template: np.ndarray, faces: np.ndarray,
               surfaces: list[np.ndarray], detected: int, total: int) -> Embedding:
    count = len(samples)
    triangles = np.zeros(count, dtype=np.int64)
    bary = np.zeros((count, 3))
    spread_mean, spread_max = np.full(count, np.nan), np.full(count, np.nan)
    kept = np.array([len(s) for s in samples])
    if (kept == 0).any():
        missing = np.flatnonzero(kept == 0)
        raise RuntimeError(f"{len(missing)} landmarks were never seen on the mesh (first: "
                           f"{missing[:10].tolist()}); add views or check the detector")
    centroids = template[faces].mean(1)
    for k, points in enumerate(samples):
        points = np.asarray(points)
        centre = geometric_median(points)
        candidates = np.flatnonzero(surfaces[k])
        distance = np.linalg.norm(centroids[candidates] - centre, axis=1)
        nearby = candidates[np.argsort(distance)[:64]]
        closest, weights = closest_points_on_triangles(centre, template[faces[nearby]])
        best = np.argmin(np.linalg.norm(closest - centre, axis=1))
        triangles[k], bary[k] = nearby[best], weights[best]
        distances = np.linalg.norm(points - closest[best], axis=1)
        spread_mean[k], spread_max[k] = 1000 * distances.mean(), 1000 * distances.max()
    return Embedding(triangles, bary, spread_mean, spread_max, kept, detected, total)


def geometric_median(points: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Weiszfeld's iteration: the point minimising the summed distance (robust to outliers)."""
    centre = np.median(points, axis=0)
    for _ in range(iterations):
        distance = np.maximum(np.linalg.norm(points - centre, axis=1), 1e-9)
        centre = (points / distance[:, None]).sum(0) / (1.0 / distance).sum()
    return centre


def closest_points_on_triangles(point: np.ndarray, triangles: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each triangle (n, 3, 3) to ``point``, and its barycentric coordinates."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    ab, ac, ap = b - a, c - a, point - a
    # Solve for the plane projection, then clamp onto the triangle by edges.
    d00, d01, d11 = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    d20, d21 = (ap * ab).sum(1), (ap * ac).sum(1)
    denominator = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / denominator
    w = (d00 * d21 - d01 * d20) / denominator
    bary = np.stack([1 - v - w, v, w], axis=1)
    inside = (bary >= 0).all(1)
    result = np.where(inside[:, None], bary, 0.0)
    for i in np.flatnonzero(~inside):  # clamp onto the nearest edge
        best, best_distance = None, np.inf
        for p, q, (ip, iq) in ((a[i], b[i], (0, 1)), (b[i], c[i], (1, 2)), (a[i], c[i], (0, 2))):
            t = np.clip(((point - p) @ (q - p)) / max((q - p) @ (q - p), 1e-30), 0.0, 1.0)
            distance = np.linalg.norm(p + t * (q - p) - point)
            if distance < best_distance:
                best_distance, best = distance, (ip, iq, t)
        ip, iq, t = best
        result[i, ip], result[i, iq] = 1 - t, t
    return np.einsum("nk,nkc->nc", result, triangles), result

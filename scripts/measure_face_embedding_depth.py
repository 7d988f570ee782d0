#!/usr/bin/env python3
"""Whether the open asset's Face Mesh embedding sits at the right depth, and how consistent
MediaPipe's own points are across views:

    python scripts/measure_face_embedding_depth.py [--size 512]

Renders the neutral asset's head from 55 views (yaw -50..50 degrees, pitch -25..25), runs Face
Mesh on each and, per landmark, finds the point nearest to all the rays through its detected
pixels (least squares, reweighted so a stray view counts little). Prints, for groups of points
(brows, lids, mouth, ...), how far that point lies from the embedded one along the surface
normal (mm, + outside), and how far the rays pass from it (median, mm): a landmark the detector
places consistently has rays that meet; one that wanders with the view has rays that do not,
and no fixed point on or off the mesh can follow it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from backend.body import registry
from backend.body.build.landmark_embedding import View, render_view
from backend.body.model import BodyModel
from backend.camera import view_rotation
from backend.perception.face_mesh import FACE_LANDMARKS, FaceMeshDetector
from backend.renderer.mesh_raster import vertex_normals

GROUPS = {"brows left": [70, 63, 105, 66, 107], "brows right": [336, 296, 334, 293, 300],
          "upper lids": [159, 386, 158, 385], "mouth corners": [61, 291],
          "lips middle": [0, 17, 13, 14], "face oval": [10, 152, 234, 454], "nose": [1, 4]}
VIEWS = [View(yaw, pitch) for yaw in range(-50, 51, 10) for pitch in (-25, -12, 0, 12, 25)]


def model_rays(camera: np.ndarray, vertices: np.ndarray, rotation: np.ndarray,
               pixels: np.ndarray, focal: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The camera's centre and unit rays through ``pixels`` (K, 2), in the model frame, for a
    render whose camera-frame vertices are ``camera = vertices @ rotation.T + shift``."""
    shift = camera[0] - rotation @ vertices[0]
    directions = np.c_[(pixels - size / 2) / focal, np.ones(len(pixels))] @ rotation
    return rotation.T @ -shift, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def nearest_to_rays(origins: np.ndarray, directions: np.ndarray, rounds: int = 10
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The point nearest to rays (V, 3) in the least-absolute-distance sense (iteratively
    reweighted least squares), and each ray's distance from it."""
    across = np.eye(3) - directions[:, :, None] * directions[:, None, :]  # (V, 3, 3)
    weights = np.ones(len(origins))
    for _ in range(rounds):
        system = np.einsum("v,vij->ij", weights, across)
        point = np.linalg.solve(system, np.einsum("v,vij,vj->i", weights, across, origins))
        distances = np.linalg.norm(np.einsum("vij,vj->vi", across, point - origins), axis=1)
        weights = 1.0 / np.maximum(distances, 1e-4)
    return point, distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="render size, pixels")
    args = parser.parse_args()
    asset = registry.load("open")
    model = BodyModel(asset).double()
    faces = model.faces
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    with torch.inference_mode():
        vertices = model({}).vertices[0].double()
    head = torch.as_tensor(asset.arrays["head_vertex_ids"], dtype=torch.long)
    origins, directions = [], []
    with FaceMeshDetector() as detect:
        for view in VIEWS:
            image, _, camera, focal = render_view(vertices, faces, colors, head, view, args.size)
            pixels = detect(image)
            if pixels is None:
                print(f"no face found at yaw {view.yaw}, pitch {view.pitch}")
                continue
            origin, rays = model_rays(camera.numpy(), vertices.numpy(),
                                      view_rotation(view.yaw, view.pitch).numpy(),
                                      pixels[:FACE_LANDMARKS, :2], focal, args.size)
            origins.append(np.broadcast_to(origin, rays.shape))
            directions.append(rays)
    origins, directions = np.stack(origins, 1), np.stack(directions, 1)  # (K, V, 3)
    regressor = model.landmark_regressor("mediapipe_face478").to_dense()
    embedded = (regressor @ vertices).numpy()
    normals = (regressor @ vertex_normals(vertices, faces)).numpy()
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    depth, miss = np.zeros(FACE_LANDMARKS), np.zeros(FACE_LANDMARKS)
    for k in range(FACE_LANDMARKS):
        point, distances = nearest_to_rays(origins[k], directions[k])
        depth[k] = 1000 * (point - embedded[k]) @ normals[k]
        miss[k] = 1000 * np.median(distances)
    print(f"{origins.shape[1]} of {len(VIEWS)} views with a face")
    for name, members in GROUPS.items():
        print(f"{name:14s} depth off the embedding (mm): {np.round(depth[members], 1)}; rays "
              f"miss by (mm): {np.round(miss[members], 1)}")
    print(f"all {FACE_LANDMARKS}: |depth| mean {np.abs(depth).mean():.2f} mm, rays miss by "
          f"{np.median(miss):.2f} mm (median)")


if __name__ == "__main__":
    main()

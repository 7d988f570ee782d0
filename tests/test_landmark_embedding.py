"""The landmark embedding recovers known points when the 'detector' finds painted markers."""

import numpy as np
import torch

from backend.body.build.landmark_embedding import View, embed


def test_markers_are_carried_back_onto_the_mesh(open_asset, open_model, open_build):
    template = open_asset.arrays["v_template"].astype(np.float64)
    head = np.flatnonzero(open_build.source.parts["head"])
    front = head[template[head, 2] > np.percentile(template[head, 2], 97)]  # face front
    markers = front[:: max(1, len(front) // 3)][:3]
    colors = torch.full((len(template), 3), 0.5, dtype=torch.float64)  # a grey body
    marker_colors = torch.eye(3, dtype=torch.float64)  # red, green, blue markers
    # Paint each marker and its one-ring so it shows as a small, symmetric blob.
    faces = open_asset.arrays["faces"]
    for marker, color in zip(markers, marker_colors, strict=True):
        ring = np.unique(faces[(faces == marker).any(1)])
        colors[ring] = color * 0.999 + 1e-3
        colors[marker] = color

    def detect(image: np.ndarray) -> np.ndarray:
        """Centroid of the pixels where each marker's channel dominates the other two."""
        rgb = image.astype(float)
        points = []
        for channel in range(3):
            others = np.delete(rgb, channel, axis=2).max(axis=2)
            score = rgb[..., channel] - others
            mask = score > 0.6 * score.max()
            ys, xs = np.nonzero(mask)
            points.append([xs.mean() + 0.5, ys.mean() + 0.5])
        return np.array(points)

    views = [View(yaw) for yaw in (-10, 0, 10)]
    result = embed(open_model, colors, torch.as_tensor(head), views, detect, len(markers))
    found = (template[faces[result.triangles]] * result.bary[:, :, None]).sum(1)
    error_mm = 1000 * np.linalg.norm(found - template[markers], axis=1)
    assert result.views_detected == 3
    assert error_mm.max() < 4.0, error_mm


def test_landmarks_keep_to_their_surface_and_views_skip_what_they_cannot_place(
        open_asset, open_model, open_build):
    """A marker painted where landmarks may not lie lands on the nearest triangle where they
    may (as an eyelid's edge drawn on the eyeball goes onto the lid); a view that skips a
    landmark adds nothing to it."""
    template = open_asset.arrays["v_template"].astype(np.float64)
    faces = open_asset.arrays["faces"]
    head = np.flatnonzero(open_build.source.parts["head"])
    nose = head[np.argmax(template[head, 2])]  # the tip of the nose, facing the camera
    colors = torch.full((len(template), 3), 0.5, dtype=torch.float64)
    ring = np.unique(faces[(faces == nose).any(1)])
    colors[ring] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    def detect(image: np.ndarray) -> np.ndarray:
        rgb = image.astype(float)
        ys, xs = np.nonzero(rgb[..., 0] - rgb[..., 1:].max(2) > 100)
        return np.array([[xs.mean() + 0.5, ys.mean() + 0.5]] * 2)

    # Landmark 0 may not lie within 1 cm of the nose tip; landmark 1 anywhere.
    near = np.linalg.norm(template[faces].mean(1) - template[nose], axis=1) < 0.01
    views = [View(0), View(10, skip=frozenset({1}))]
    result = embed(open_model, colors, torch.as_tensor(head), views, detect, 2,
                   surfaces=[~near, np.ones(len(faces), bool)])
    assert not near[result.triangles[0]] and near[result.triangles[1]]
    found = (template[faces[result.triangles[0]]] * result.bary[0, :, None]).sum(0)
    assert 1000 * np.linalg.norm(found - template[nose]) < 14.0  # just outside the forbidden disc
    assert result.samples.tolist() == [2, 1]

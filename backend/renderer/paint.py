"""Paint a bare body mesh so that face and body detectors take its renders for a person: skin,
white eyes with dark irises, lips, brows and short hair. Detectors find faces on such renders far
more reliably than on a uniform-coloured mesh."""

from __future__ import annotations

import numpy as np

SKIN = (0.80, 0.60, 0.49)
COLORS = {
    "sclera": (0.93, 0.92, 0.90),
    "iris": (0.30, 0.19, 0.10),
    "pupil": (0.03, 0.03, 0.03),
    "cavity": (0.30, 0.10, 0.10),
    "tongue": (0.70, 0.36, 0.36),
    "lips": (0.66, 0.34, 0.33),
    "brows": (0.22, 0.15, 0.10),
    "hair": (0.16, 0.11, 0.08),
}


def _blend(colors: np.ndarray, mask: np.ndarray, color: tuple, amount: np.ndarray | float = 1.0
           ) -> None:
    amount = np.broadcast_to(np.asarray(amount, dtype=float), mask.shape)[mask][:, None]
    colors[mask] = (1 - amount) * colors[mask] + amount * np.asarray(color)


def paint_vertices(vertices: np.ndarray, parts: dict[str, np.ndarray],
                   regions: dict[str, np.ndarray], up: np.ndarray, forward: np.ndarray
                   ) -> np.ndarray:
    """Per-vertex RGB in [0, 1].

    parts: boolean masks of ``eye_front``, ``eye_back``, ``cavity`` (eye and mouth), ``tongue``,
    ``head``; regions: per-vertex weights in [0, 1] of ``lips`` and ``brows`` (e.g. how strongly
    the lip and brow expressions move each vertex); up/forward: the body's axes.
    """
    colors = np.tile(np.asarray(SKIN, dtype=float), (len(vertices), 1))
    _blend(colors, parts["cavity"], COLORS["cavity"])
    _blend(colors, parts["tongue"], COLORS["tongue"])
    _blend(colors, parts["eye_back"], COLORS["sclera"])
    iris = parts["eye_front"]
    _blend(colors, iris, COLORS["iris"])
    for side in (vertices[:, 0] > 0, vertices[:, 0] <= 0):  # the pupil: the front of each iris
        front = iris & side
        if front.any():
            tip = (vertices[front] @ forward).max()
            _blend(colors, front & (vertices @ forward > tip - 0.0015), COLORS["pupil"])
    _blend(colors, regions["lips"] > 0.05, COLORS["lips"], np.clip(regions["lips"] * 1.5, 0, 1))
    _blend(colors, regions["brows"] > 0.3, COLORS["brows"], np.clip(regions["brows"], 0, 1))
    # Short hair: the part of the head above the brows and behind the forehead.
    head = parts["head"]
    height = vertices @ up
    brow_height = np.average(height, weights=regions["brows"] + 1e-12)
    depth = vertices @ forward
    front_of_head = np.percentile(depth[head], 95)
    hair = head & (height > brow_height + 0.035) | head & (height > brow_height - 0.02) & (
        depth < front_of_head - 0.06)
    _blend(colors, hair, COLORS["hair"])
    return colors

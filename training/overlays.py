"""Pictures of what a checkpoint predicts (``pear-train eval --overlay DIR``): each sample's
crop, as the network saw it, with the network's mesh drawn over it beside the mean-parameter
baseline's, so a person can see what the metrics mean."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.pipeline.overlay import draw_mesh, meshes_on_screen
from backend.regressor.vit import INPUT_SIZE

from .data.batch import Batch
from .data.loader import Prepare, SampleSource
from .evaluate import predictions

GAP = 4  # pixels between the two pictures


def crop_intrinsics(batch: Batch, i: int) -> tuple[float, tuple[float, float]]:
    """Focal length and principal point of sample i's crop: its full-frame camera with the
    crop box scaled to the network's input (``data/batch.py``'s normalized crop units)."""
    height, width = INPUT_SIZE
    scale = height / float(batch.box_height[i])
    center = (batch.principal_point[i] - batch.box_center[i]).double() * scale
    return float(batch.focal[i]) * scale, (float(center[0]) + width / 2,
                                           float(center[1]) + height / 2)


def _labelled(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = image.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def write_overlays(network: torch.nn.Module, asset: Asset, source: SampleSource, out: Path,
                   prepare: Prepare | None = None, count: int = 16) -> list[Path]:
    """One PNG per sample for the first ``count`` samples: the network's mesh (left) and the
    baseline's (right) over the crop. Returns the files, in sample order."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    model = BodyModel(asset)
    faces = model.faces.numpy()
    written = []
    ours = predictions(network, asset, source, prepare, limit=count)
    baseline = predictions(None, asset, source, prepare, limit=count)
    for (samples, batch, mine), (_, _, theirs) in zip(ours, baseline, strict=True):
        pictures = []
        for prediction in (mine, theirs):
            with torch.no_grad():
                vertices = model(prediction.params).vertices
            pictures.append([meshes_on_screen(vertices[i:i + 1], prediction.cam_t[i:i + 1],
                                              model.faces, *crop_intrinsics(batch, i))
                             for i in range(len(batch))])
        for i, sample in enumerate(samples):
            (screen, colors), (base_screen, base_colors) = pictures[0][i], pictures[1][i]
            left = _labelled(draw_mesh(sample.image, screen[0], colors[0], faces), "network")
            right = _labelled(draw_mesh(sample.image, base_screen[0], base_colors[0], faces),
                              "baseline")
            gap = np.zeros((left.shape[0], GAP, 3), np.uint8)
            path = out / f"{len(written):03d}_{re.sub(r'[^A-Za-z0-9]+', '_', sample.id)}.png"
            cv2.imwrite(str(path), cv2.cvtColor(np.hstack([left, gap, right]),
                                                cv2.COLOR_RGB2BGR))
            written.append(path)
    return written

"""Footage the tests make: the open asset giving the demo performance, rendered to a video."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.pipeline.demo import demo_motion, render_demo_clip


def write_demo_clip(asset: Asset, frames: int, path: Path) -> Path:
    """A ``frames``-frame clip of ``asset`` (painted, e.g. the open one) at ``path`` (.mp4)."""
    model = BodyModel(asset).double()
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    render_demo_clip(model, colors, demo_motion(model, frames, asset.meta["expression_names"]),
                     path)
    return path

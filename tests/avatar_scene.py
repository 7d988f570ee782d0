"""A rendered person and a short motion of theirs: what the avatar tests animate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.results import ClipResults
from backend.tracking.render_clip import render_frames
from backend.tracking.synthetic import make_clip

SIZE = (480, 640)  # height, width


def avatar_scene(asset: Asset, folder: Path, frames: int = 3) -> tuple[list[np.ndarray],
                                                                      ClipResults]:
    """The open model performing ``frames`` frames, rendered (RGB, written as PNGs to
    ``folder/footage``), and their true motion as a result whose footage is that folder."""
    model = BodyModel(asset).double()
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    clip = make_clip(model, frames=frames, seed=4, size=SIZE, focal=600.0, world_noise_m=0.0)
    images = render_frames(model, clip.params, clip.cam_t, clip.focal, SIZE, colors)
    footage = folder / "footage"
    footage.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(footage / f"{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    motion = ClipResults(asset.asset_id, asset.spec_hash, np.arange(frames),
                         np.arange(frames) / 30.0,
                         {k: v.numpy() for k, v in clip.params.items()}, clip.cam_t.numpy(),
                         clip.focal, (SIZE[1] / 2, SIZE[0] / 2), SIZE[1], SIZE[0],
                         info={"footage": str(footage)})
    return images, motion

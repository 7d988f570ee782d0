"""Renderer checkpoints: the regressor's folder layout (``backend.checkpoint_folder``), format
``pear-avatar`` v1, holding the avatar network's sizes. A checkpoint only loads for the asset
it was trained for: its Gaussians live on that mesh's triangles and UV layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..body.asset import Asset
from ..checkpoint_folder import (
    CONFIG,
    WEIGHTS,
    CheckpointKind,
    check_folder,
    load_weights,
    save_folder,
)
from ..errors import SetupError
from .config import AvatarConfig
from .model import GaussianAvatar


class AvatarUnavailable(SetupError, RuntimeError):
    """No usable renderer checkpoint: the avatar cannot be built (never a random network)."""


class AvatarCheckpointMismatch(SetupError, ValueError):
    """A renderer checkpoint made for another asset, or not one at all."""


KIND = CheckpointKind("pear-avatar", 1, "renderer", "train one with `pear-train renderer` "
                      "(docs/avatar.md)", AvatarUnavailable, AvatarCheckpointMismatch)


def build_avatar(config: AvatarConfig, asset: Asset) -> GaussianAvatar:
    """A fresh (untrained) avatar network on ``asset``'s mesh."""
    arrays = asset.arrays
    if "uv_coords" not in arrays or "uv_faces" not in arrays:
        raise AvatarUnavailable(f"body model {asset.asset_id!r} has no UV layout (uv_coords, "
                                "uv_faces), which the avatar's UV Gaussians need: use the open "
                                "asset or an SMPL-X asset installed with its UVs")
    return GaussianAvatar(config, np.asarray(arrays["faces"]), np.asarray(arrays["uv_coords"]),
                          np.asarray(arrays["uv_faces"]), len(arrays["v_template"]))


def save_avatar(model: GaussianAvatar, asset: Asset, folder: str | Path) -> Path:
    return save_folder(KIND, model, dataclasses.asdict(model.config), asset, folder)


def check_avatar_checkpoint(folder: str | Path, asset: Asset) -> dict:
    """The checkpoint's config if ``folder`` holds one for ``asset``, else an error saying
    what is wrong."""
    return check_folder(KIND, folder, asset)


def load_avatar(folder: str | Path, asset: Asset, device: str | torch.device = "cpu"
                ) -> GaussianAvatar:
    """The trained avatar network in ``folder`` for ``asset``, in eval mode."""
    described = check_avatar_checkpoint(folder, asset)["network"]
    try:
        sizes = AvatarConfig(**described)
    except TypeError as exc:
        raise AvatarCheckpointMismatch(f"{Path(folder) / CONFIG}: network sizes not understood "
                                       f"({exc})") from None
    model = build_avatar(sizes, asset)
    load_weights(KIND, folder, model)
    return model.to(device).eval()


def start_encoder_from(model: GaussianAvatar, path: str | Path) -> None:
    """Load a pretrained ViT into the avatar's ``vit``/``dinov2`` appearance encoder before
    training: a DINOv2 ``.pth``, ViTPose's, or a regressor checkpoint (its folder or weights
    file; the backbone is taken, the head left). Errors name ``model.encoder_weights``."""
    from ..regressor.pretrained import PretrainedMismatch, load_backbone

    config = model.config
    if config.encoder == "unet":
        raise AvatarCheckpointMismatch(
            f"model.encoder_weights = {str(path)!r} needs a ViT encoder: set model.encoder to "
            "'vit' (the regressor's patch-16 ViT, ViTPose's) or 'dinov2', or leave "
            "model.encoder_weights empty")
    path = Path(path)
    if path.is_dir():  # a regressor checkpoint folder
        path = path / WEIGHTS
    if not path.is_file():
        raise AvatarUnavailable(f"model.encoder_weights: {path} does not exist: give a local "
                                "file (DINOv2's or ViTPose's weights, or a regressor "
                                "checkpoint); nothing is downloaded")
    try:
        load_backbone(model.encoder.vit, path)
    except PretrainedMismatch as exc:
        raise AvatarCheckpointMismatch(f"model.encoder_weights: {exc} (model.encoder "
                                       f"{config.encoder!r}, model.encoder_vit "
                                       f"{config.encoder_vit!r})") from None

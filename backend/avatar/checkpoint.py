"""Renderer checkpoints: a folder with ``weights.safetensors`` and ``config.json`` (the avatar
network's sizes, the asset's id and spec hash), like the regressor's. A checkpoint only loads
for the asset it was trained for: its Gaussians live on that mesh's triangles and UV layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..body.asset import Asset
from ..errors import SetupError
from .config import AvatarConfig
from .model import GaussianAvatar

FORMAT_NAME = "pear-avatar"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "weights.safetensors", "config.json"


class AvatarUnavailable(SetupError, RuntimeError):
    """No usable renderer checkpoint: the avatar cannot be built (never a random network)."""


class AvatarCheckpointMismatch(SetupError, ValueError):
    """A renderer checkpoint made for another asset, or not one at all."""


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(folder / WEIGHTS))
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "network": dataclasses.asdict(model.config), "asset_id": asset.asset_id,
              "spec_hash": asset.spec_hash}
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def check_avatar_checkpoint(folder: str | Path, asset: Asset) -> dict:
    """The checkpoint's config if ``folder`` holds one for ``asset``, else an error saying
    what is wrong."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise AvatarUnavailable(f"no renderer checkpoint in {folder} (it needs {CONFIG} and "
                                f"{WEIGHTS}): train one with `pear-train renderer` "
                                "(docs/avatar.md)")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AvatarCheckpointMismatch(f"{folder / CONFIG} is not readable JSON ({exc})"
                                       ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME \
            or config.get("format_version") != FORMAT_VERSION:
        found = config.get("format") if isinstance(config, dict) else None
        raise AvatarCheckpointMismatch(f"{folder / CONFIG} is not a {FORMAT_NAME} "
                                       f"v{FORMAT_VERSION} checkpoint (format {found!r})")
    if config.get("spec_hash") != asset.spec_hash:
        raise AvatarCheckpointMismatch(
            f"renderer checkpoint {folder} was trained on body model {config.get('asset_id')!r}"
            f" (spec {config.get('spec_hash')}); the loaded body model is {asset.asset_id!r} "
            f"(spec {asset.spec_hash}): use that asset, or a checkpoint trained for this one")
    return config


def load_avatar(folder: str | Path, asset: Asset, device: str | torch.device = "cpu"
                ) -> GaussianAvatar:
    """The trained avatar network in ``folder`` for ``asset``, in eval mode."""
    folder = Path(folder)
    config = check_avatar_checkpoint(folder, asset)
    try:
        sizes = AvatarConfig(**config["network"])
    except TypeError as exc:
        raise AvatarCheckpointMismatch(f"{folder / CONFIG}: network sizes not understood "
                                       f"({exc})") from None
    model = build_avatar(sizes, asset)
    weights = load_file(str(folder / WEIGHTS))
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(weights)) or sorted(
        k for k in expected if expected[k].shape != weights[k].shape)
    if wrong:
        raise AvatarCheckpointMismatch(f"{folder / WEIGHTS} does not fit the network its "
                                       f"config describes: tensor(s) {wrong[:5]} missing, "
                                       "extra or of another shape")
    model.load_state_dict(weights)
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

"""Adapter checkpoints: a folder like a regressor checkpoint (``weights.safetensors`` with the
adapters alone, ``config.json``) that also names its base — the hash of the base checkpoint's
weights — so an adapter loads only onto the network it was trained beside."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..body.asset import Asset
from ..body.landmark_model import LandmarkModel
from ..body.model import BodyModel
from ..checkpoint_folder import (
    CONFIG,
    WEIGHTS,
    CheckpointKind,
    check_folder,
    load_weights,
    save_folder,
)
from .adapters import AdaptedRegressor, AdapterConfig
from .checkpoint import load_checkpoint
from .errors import CheckpointMismatch, RegressorUnavailable

KIND = CheckpointKind("pear-adapter", 1, "adapter", "train one with `pear-train adapt --base "
                      "CKPT --footage CLIP ... --out DIR`", RegressorUnavailable,
                      CheckpointMismatch)


def base_hash(base_folder: str | Path) -> str:
    """The fingerprint of a base checkpoint: its weights file's SHA-256 (first 16 hex)."""
    digest = hashlib.sha256()
    with open(Path(base_folder) / WEIGHTS, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def save_adapter(adapted: AdaptedRegressor, base_folder: str | Path, asset: Asset,
                 folder: str | Path) -> Path:
    network = {"adapter": adapted.config.to_json(), "base_hash": base_hash(base_folder),
               "base": str(Path(base_folder).resolve())}
    return save_folder(KIND, adapted.adapter, network, asset, folder)


def load_adapted(base_folder: str | Path, adapter_folder: str | Path, asset: Asset,
                 device: str | torch.device = "cpu") -> AdaptedRegressor:
    """The base checkpoint with the adapter in ``adapter_folder`` on it, in eval mode; a
    ``CheckpointMismatch`` when the adapter was trained beside another base."""
    described = check_folder(KIND, adapter_folder, asset)["network"]
    expected, found = described.get("base_hash"), base_hash(base_folder)
    if expected != found:
        raise CheckpointMismatch(
            f"adapter {adapter_folder} was trained on the base checkpoint "
            f"{described.get('base', '?')} (weights {expected}); {base_folder} is another "
            f"(weights {found}): give --checkpoint that base, or adapt this one with "
            "`pear-train adapt`")
    try:
        config = AdapterConfig(**described["adapter"])
    except (KeyError, TypeError) as exc:
        raise CheckpointMismatch(f"{Path(adapter_folder) / CONFIG}: adapter not understood "
                                 f"({exc})") from None
    base = load_checkpoint(base_folder, asset)
    body = LandmarkModel(BodyModel(asset), sets=[])
    adapted = AdaptedRegressor(base, body, asset.joint_names, config)
    load_weights(KIND, adapter_folder, adapted.adapter)
    return adapted.to(device).eval()


def installed_adapters(folder: str | Path) -> dict[str, dict]:
    """The adapter checkpoints in ``folder``'s subfolders, by folder name: each one's body
    model and base hash, or why it cannot be read (``problem``)."""
    import json

    found = {}
    for path in sorted(Path(folder).glob("*/")):
        try:
            config = json.loads((path / CONFIG).read_text())
            if config.get("format") != KIND.format_name:
                raise ValueError(f"not a {KIND.format_name} checkpoint")
            found[path.name] = {"asset_id": config["asset_id"],
                                "base_hash": config["network"]["base_hash"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found[path.name] = {"problem": f"{path}: {exc}"}
    return found

"""The checkpoint folder the regressor and the avatar renderer share: ``weights.safetensors``
and ``config.json`` (format name and version, the network's config, the body model's id and
spec hash). A checkpoint loads only for the body model it was trained for. Each network names
its own format and error classes; the checks and their wording are here, once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .body.asset import Asset

WEIGHTS, CONFIG = "weights.safetensors", "config.json"


@dataclass(frozen=True)
class CheckpointKind:
    """One network's checkpoints: ``what`` names it in messages ("regressor"), ``missing``
    says what to do when there is none, ``unavailable`` and ``mismatch`` are the errors for no
    checkpoint and for a wrong one."""

    format_name: str
    format_version: int
    what: str
    missing: str
    unavailable: type[Exception]
    mismatch: type[Exception]


def save_folder(kind: CheckpointKind, model: nn.Module, network: dict, asset: Asset,
                folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(folder / WEIGHTS))
    config = {"format": kind.format_name, "format_version": kind.format_version,
              "network": network, "asset_id": asset.asset_id, "spec_hash": asset.spec_hash}
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def check_folder(kind: CheckpointKind, folder: str | Path, asset: Asset) -> dict:
    """The config in ``folder`` if it holds a checkpoint of ``kind`` for ``asset`` (the
    weights are not read); raises ``kind.unavailable`` or ``kind.mismatch`` saying why not."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise kind.unavailable(f"no {kind.what} checkpoint in {folder} (it needs {CONFIG} and "
                               f"{WEIGHTS}): {kind.missing}")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise kind.mismatch(f"{folder / CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        config = {}
    if config.get("format") != kind.format_name \
            or config.get("format_version") != kind.format_version:
        raise kind.mismatch(f"{folder / CONFIG} is not a {kind.format_name} "
                            f"v{kind.format_version} checkpoint (format "
                            f"{config.get('format')!r} v{config.get('format_version')!r})")
    if config.get("spec_hash") != asset.spec_hash:
        raise kind.mismatch(
            f"{kind.what} checkpoint {folder} was trained for body model "
            f"{config.get('asset_id')!r} (spec {config.get('spec_hash')}); the loaded body model "
            f"is {asset.asset_id!r} (spec {asset.spec_hash}): use that asset, or a checkpoint "
            "trained for this one")
    if not isinstance(config.get("network"), dict):
        raise kind.mismatch(f"{folder / CONFIG} has no network description")
    return config


def load_weights(kind: CheckpointKind, folder: str | Path, model: nn.Module) -> None:
    """Fill ``model`` with the folder's weights, which must fit it tensor for tensor."""
    path = Path(folder) / WEIGHTS
    weights = load_file(str(path))
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(weights)) or sorted(
        k for k in expected if expected[k].shape != weights[k].shape)
    if wrong:
        raise kind.mismatch(f"{path} does not fit the network its config describes: "
                            f"tensor(s) {wrong[:5]} missing, extra or of another shape")
    model.load_state_dict(weights)

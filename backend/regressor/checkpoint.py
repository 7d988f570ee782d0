"""Regressor checkpoints: a folder with ``weights.safetensors`` and ``config.json`` (network
config, the asset's id and spec hash). A checkpoint only loads for the asset configuration it
was trained for: the output layout follows the parameter spec."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..body.asset import Asset
from .errors import CheckpointMismatch, RegressorUnavailable
from .layout import ParamLayout
from .model import PearRegressor, RegressorConfig

FORMAT_NAME = "pear-regressor"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "weights.safetensors", "config.json"


def save_checkpoint(model: PearRegressor, asset: Asset, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "network": model.config.to_json(), "asset_id": asset.asset_id,
              "spec_hash": asset.spec_hash}
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def check_checkpoint(folder: str | Path, asset: Asset) -> dict:
    """The config of the checkpoint in ``folder`` if it is one for ``asset`` (the weights are
    not read); raises ``RegressorUnavailable`` or ``CheckpointMismatch`` saying why not."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise RegressorUnavailable(
            f"no regressor checkpoint in {folder} (it needs {CONFIG} and {WEIGHTS}); train "
            "one, or use the tracker estimator, which needs no checkpoint")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointMismatch(f"{folder / CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        config = {}
    if config.get("format") != FORMAT_NAME or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatch(f"{folder / CONFIG} is not a {FORMAT_NAME} v{FORMAT_VERSION} "
                                 f"checkpoint (format {config.get('format')!r} "
                                 f"v{config.get('format_version')!r})")
    if config["spec_hash"] != asset.spec_hash:
        raise CheckpointMismatch(
            f"checkpoint {folder} was trained for body model {config['asset_id']!r} (spec "
            f"{config['spec_hash']}); the loaded body model is {asset.asset_id!r} (spec "
            f"{asset.spec_hash}): use that asset, or a checkpoint trained for this one")
    return config


def load_checkpoint(folder: str | Path, asset: Asset, device: str | torch.device = "cpu"
                    ) -> PearRegressor:
    """The network in ``folder`` for ``asset``, in eval mode."""
    folder = Path(folder)
    network = RegressorConfig.from_json(check_checkpoint(folder, asset)["network"])
    model = PearRegressor(network, ParamLayout(asset.param_spec))
    weights = load_file(str(folder / WEIGHTS))
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(weights)) or sorted(
        k for k in expected if expected[k].shape != weights[k].shape)
    if wrong:
        raise CheckpointMismatch(
            f"{folder / WEIGHTS} does not fit the network its config describes ({network}): "
            f"tensor(s) {wrong[:5]} missing, extra or of another shape")
    model.load_state_dict(weights)
    return model.to(device).eval()

"""Regressor checkpoints: a folder with ``weights.safetensors`` and ``config.json`` (network
config, the asset's id and spec hash). A checkpoint only loads for the asset configuration it
was trained for: the output layout follows the parameter spec."""

from __future__ import annotations

from pathlib import Path

import torch

from ..body.asset import Asset
from ..checkpoint_folder import CONFIG, CheckpointKind, check_folder, load_weights, save_folder
from .errors import CheckpointMismatch, RegressorUnavailable
from .layout import ParamLayout
from .model import PearRegressor, RegressorConfig

KIND = CheckpointKind("pear-regressor", 1, "regressor", "train one, or use the tracker "
                      "estimator, which needs no checkpoint", RegressorUnavailable,
                      CheckpointMismatch)


def save_checkpoint(model: PearRegressor, asset: Asset, folder: str | Path) -> Path:
    return save_folder(KIND, model, model.config.to_json(), asset, folder)


def check_checkpoint(folder: str | Path, asset: Asset) -> dict:
    """The config of the checkpoint in ``folder`` if it is one for ``asset`` (the weights are
    not read); raises ``RegressorUnavailable`` or ``CheckpointMismatch`` saying why not."""
    return check_folder(KIND, folder, asset)


def load_checkpoint(folder: str | Path, asset: Asset, device: str | torch.device = "cpu"
                    ) -> PearRegressor:
    """The network in ``folder`` for ``asset``, in eval mode."""
    described = check_checkpoint(folder, asset)["network"]
    try:
        network = RegressorConfig.from_json(described)
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{Path(folder) / CONFIG}: network not understood ({exc})"
                                 ) from None
    model = PearRegressor(network, ParamLayout(asset.param_spec))
    load_weights(KIND, folder, model)
    return model.to(device).eval()

"""Pretrained ViT backbones from local files (e.g. ViTPose's or HMR2's, timm-style names):
``.safetensors``, or a torch ``.pth``/``.pt`` state dict (read with ``weights_only``). A
``backbone.`` prefix is dropped, a class token discarded and the position embeddings resized
to this network's patch grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import SetupError
from .vit import ViT

_RENAMES = {"patch_embed.proj.": "patch_embed.", "fc_norm.": "norm."}


class PretrainedMismatch(SetupError, ValueError):
    """The file does not hold a ViT of this configuration."""


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state.get("model", state))


def _resize_positions(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, N[+1], D) position embeddings on a square or given grid -> (1, gh * gw, D)."""
    tokens = table.shape[1]
    if tokens == grid[0] * grid[1]:
        return table
    if math.isqrt(tokens - 1) ** 2 == tokens - 1:  # a class token first
        table, tokens = table[:, 1:], tokens - 1
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise PretrainedMismatch(f"position embeddings of {tokens} tokens are not a square "
                                 f"grid and not this network's {grid[0]}x{grid[1]}")
    square = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)


def load_backbone(vit: ViT, path: str | Path) -> None:
    """Load ``path``'s weights into ``vit``; every tensor of ``vit`` must be in the file."""
    state = {}
    for name, tensor in _read(Path(path)).items():
        name = name.removeprefix("backbone.")
        for old, new in _RENAMES.items():
            name = name.replace(old, new)
        state[name] = tensor
    if "pos_embed" in state:
        state["pos_embed"] = _resize_positions(state["pos_embed"], vit.config.grid)
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or wrong:
        detail = (f"missing {missing[:4]}" if missing else
                  f"{wrong[0]}: {tuple(state[wrong[0]].shape)} in the file, "
                  f"{tuple(expected[wrong[0]].shape)} here")
        raise PretrainedMismatch(f"{path} is not a {vit.config.name} backbone ({detail})")
    vit.load_state_dict({k: state[k] for k in expected})

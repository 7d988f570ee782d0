"""The avatar's training losses (GUAVA's, ``configs/train`` there): per image, L1 plus a
perceptual term, on the refined and on the raw splatted image, again on crops of the face and
each hand; and regularisers that keep Gaussians near their triangles and small.

LPIPS needs AlexNet weights that cannot be downloaded here; without a local file (``loss.
lpips_weights``) SSIM stands in for it (1 - SSIM, 11-px Gaussian window, sigma 1.5), and the
run's logs name the substitute."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.avatar.model import Avatar, Rendering
from backend.errors import InputError

from .batch import PARTS, PairBatch
from .config import AvatarLossConfig

# Per-part weights by PARTS order: the face, then each hand.
Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, 3, H, W) x2 -> (B,)


@dataclass
class PerceptualLoss:
    name: str  # "lpips" or "ssim"
    measure: Perceptual


def perceptual_loss(lpips_weights: str = "") -> PerceptualLoss:
    """LPIPS from a local AlexNet file, else 1 - SSIM (named so)."""
    if not lpips_weights:
        from pytorch_msssim import ssim

        return PerceptualLoss("ssim", lambda a, b: 1 - ssim(a, b, data_range=1.0,
                                                            size_average=False))
    path = Path(lpips_weights)
    if not path.is_file():
        raise InputError(f"loss.lpips_weights: {path} is not a file (a torchvision AlexNet "
                         "state dict); leave it empty to train with SSIM instead")
    try:
        import lpips
    except Exception as exc:  # lpips imports torchvision, which must match torch
        raise InputError(f"loss.lpips_weights is set but the lpips package does not import "
                         f"here ({exc}); install lpips with a torchvision matching torch, or "
                         "leave loss.lpips_weights empty to train with SSIM") from None
    network = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    network.net.load_state_dict(torch.load(path, map_location="cpu"), strict=False)
    network.eval().requires_grad_(False)
    return PerceptualLoss("lpips", lambda a, b: network(a, b, normalize=True).flatten())


@dataclass
class AvatarLosses:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # name -> scalar, unweighted

    def logged(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in self.terms.items()}


def avatar_loss(rendering: Rendering, avatar: Avatar, batch: PairBatch,
                config: AvatarLossConfig, perceptual: PerceptualLoss) -> AvatarLosses:
    target = batch.target.image
    terms: dict[str, torch.Tensor] = {}
    for name, image in (("refined", rendering.image), ("raw", rendering.raw)):
        terms[f"{name}_l1"] = (image - target).abs().mean()
        terms[f"{name}_{perceptual.name}"] = perceptual.measure(image, target).mean()
        for k, part in enumerate(PARTS):
            found = batch.has_box[:, k]
            if not found.any():
                continue
            boxes = batch.boxes[found, k]
            mine = crop(image[found], boxes, config.crop_size)
            truth = crop(target[found], boxes, config.crop_size)
            terms[f"{name}_{part}_l1"] = (mine - truth).abs().mean()
            terms[f"{name}_{part}_{perceptual.name}"] = perceptual.measure(mine, truth).mean()
    terms["position"] = torch.relu(avatar.offsets.norm(dim=-1) - config.position_limit).mean()
    terms["scale"] = torch.relu(avatar.scales - config.scale_limit).mean()
    total = config.position * terms["position"] + config.scale * terms["scale"]
    for name, value in terms.items():
        if name in ("position", "scale"):
            continue
        weight = config.perceptual if name.endswith(perceptual.name) else config.l1
        part = next((p for p in PARTS if f"_{p}_" in name), None)
        if part is not None:
            weight *= config.face if part == "face" else config.hands
        total = total + weight * value
    return AvatarLosses(total, terms)


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, size, size) bilinear resamplings of boxes (N, 4) (x0, y0, x1, y1 pixels)."""
    height, width = images.shape[-2:]
    steps = (torch.arange(size, dtype=images.dtype, device=images.device) + 0.5) / size
    x = boxes[:, None, 0] + steps * (boxes[:, None, 2] - boxes[:, None, 0])
    y = boxes[:, None, 1] + steps * (boxes[:, None, 3] - boxes[:, None, 1])
    grid = torch.stack([(x / width * 2 - 1)[:, None, :].expand(-1, size, -1),
                        (y / height * 2 - 1)[:, :, None].expand(-1, -1, size)], -1)
    return torch.nn.functional.grid_sample(images, grid.to(images.dtype), align_corners=False)

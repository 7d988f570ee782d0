"""Self-reenactment on held-out pairs: the avatar built from each source renders its target,
scored by PSNR and SSIM against the truth (the refined image, and the splatted colours
before the refiner: ``avatar_raw``), beside two baselines on the same pairs: the target
mesh painted with the colours the source image shows at each vertex (unseen vertices take the
mean seen colour), and the mean target image. LPIPS is not reported: its weights are not
available here."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ssim

from backend.avatar.model import GaussianAvatar, sample_at, seen_by_camera
from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.renderer import mesh_raster

from .batch import collate_pairs
from .train import posed_vertices


@torch.no_grad()
def evaluate_renderer(avatar: GaussianAvatar, asset: Asset, pairs, count: int = 64,
                      batch_size: int = 4, sheet: list | None = None) -> dict[str, dict]:
    """Mean PSNR (dB) and SSIM per method over the first ``count`` pairs; with ``sheet``,
    each pair's (source, truth, avatar, projected colours) images are appended to it."""
    body = BodyModel(asset)
    faces = avatar.faces
    count = min(count, len(pairs))
    truths, renders = [], {"avatar": [], "avatar_raw": [], "projected_colours": []}
    for first in range(0, count, batch_size):
        batch = collate_pairs([pairs[i] for i in range(first, min(first + batch_size, count))])
        source = posed_vertices(body, batch.source)
        target = posed_vertices(body, batch.target)
        height, width = batch.target.image.shape[-2:]
        rendering, _ = avatar(batch.source.image, source, batch.source.K, target,
                              batch.target.K)
        projected = projected_colours(batch.source.image, source, target, batch.source.K,
                                      batch.target.K, faces, height, width)
        truths.append(batch.target.image)
        renders["avatar"].append(rendering.image.clamp(0, 1))
        renders["avatar_raw"].append(rendering.raw.clamp(0, 1))
        renders["projected_colours"].append(projected)
        if sheet is not None:
            for k in range(len(batch)):
                sheet.append([batch.source.image[k], batch.target.image[k],
                              rendering.image[k].clamp(0, 1), projected[k]])
    truth = torch.cat(truths)
    results = {name: _scores(torch.cat(images), truth) for name, images in renders.items()}
    results["mean_image"] = _scores(truth.mean(0, keepdim=True).expand_as(truth), truth)
    return {name: {**scores, "pairs": len(truth)} for name, scores in results.items()}


def projected_colours(image: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                      source_K: torch.Tensor, target_K: torch.Tensor, faces: torch.Tensor,
                      height: int, width: int) -> torch.Tensor:
    """The baseline: the target mesh (B, V, 3) coloured by the source image where the source
    sees each vertex, rendered onto black (B, 3, H, W)."""
    colours = sample_at(image, source, source_K, *image.shape[-2:])  # (B, V, 3)
    seen = seen_by_camera(source, source, faces, source_K, *image.shape[-2:]).bool()
    out = []
    for b in range(len(image)):
        mean = colours[b][seen[b]].mean(0) if seen[b].any() else colours.new_zeros(3)
        vertex_colours = torch.where(seen[b, :, None], colours[b], mean)
        screen = mesh_raster.project(target[b], float(target_K[b, 0, 0]),
                                     (float(target_K[b, 0, 2]), float(target_K[b, 1, 2])))
        fragments = mesh_raster.rasterize(screen, faces, height, width)
        out.append(mesh_raster.interpolate(fragments, faces, vertex_colours).permute(2, 0, 1))
    return torch.stack(out)


def _scores(images: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    mse = ((images - truth) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return {"psnr": float((10 * torch.log10(1 / mse)).mean()),
            "ssim": float(ssim(images, truth, data_range=1.0, size_average=True))}


def contact_sheet(rows: list, limit: int = 8) -> np.ndarray:
    """(H*rows, W*4, 3) uint8: per pair, source | truth | avatar | projected colours."""
    tiles = [torch.cat(list(row), dim=2) for row in rows[:limit]]
    sheet = torch.cat(tiles, dim=1).permute(1, 2, 0).clamp(0, 1)
    return (sheet.cpu().numpy() * 255).round().astype(np.uint8)

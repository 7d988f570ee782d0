"""The Gaussian avatar: built once from a source image of a person and their fitted body, then
rendered in any target body (GUAVA §3.2-3.4, PEAR Eq. 5).

Two kinds of Gaussians, all rigged to triangles (``rigging.py``):
- template Gaussians, one per vertex: the encoder's features where the vertex projects in the
  source image, a learned per-vertex feature and the identity code, through an MLP;
- UV Gaussians, one per texel of the UV map on the mesh: the source image's colour and features
  where the texel's surface point projects (zero where the source view does not see it), a
  U-Net that fills in the unseen texels, and a per-texel head that also moves the Gaussian off
  the surface.
Splatted with the target body (``renderer.gaussians``) they give a latent image whose first
three channels are colour; a U-Net refiner corrects those colours from the whole latent image
(GUAVA's refiner paints the image from the latent alone; a correction trains faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..renderer import mesh_raster
from ..renderer.gaussians import rasterize
from .config import AvatarConfig
from .networks import UNet, appearance_encoder, mlp
from .rigging import rig, surface_points, vertex_anchors
from .uv import uv_texels

# Gaussian attributes per Gaussian: offset 3, rotation 4, scale 3, opacity 1, then colours.
_OFFSET, _ROTATION, _SCALE, _OPACITY = slice(0, 3), slice(3, 7), slice(7, 10), 10
ATTRIBUTES = 11
# Scales are at most this many triangle sizes (the triangle's edge/height mean).
MAX_SCALE = 3.0
# A texel's surface point counts as seen from the source camera within this depth of the
# nearest surface there (metres).
SEEN_TOLERANCE = 0.01


@dataclass
class Avatar:
    """One person's Gaussians (B sources), attributes in their triangles' units."""

    offsets: torch.Tensor  # (B, G, 3)
    quats: torch.Tensor  # (B, G, 4)
    scales: torch.Tensor  # (B, G, 3)
    opacities: torch.Tensor  # (B, G)
    colors: torch.Tensor  # (B, G, C)


@dataclass
class Rendering:
    image: torch.Tensor  # (B, 3, H, W) refined, in [0, 1]
    raw: torch.Tensor  # (B, 3, H, W) the splatted colour channels
    alpha: torch.Tensor  # (B, 1, H, W)


class GaussianAvatar(nn.Module):
    """The network: ``build`` once per source image, ``render`` per target body; ``forward``
    does both (training). Its buffers are the asset's mesh, the Gaussians' anchors (vertices,
    then texels) and where each texel sits in the UV map."""

    def __init__(self, config: AvatarConfig, faces: np.ndarray, uv_coords: np.ndarray,
                 uv_faces: np.ndarray, vertex_count: int):
        super().__init__()
        self.config = config
        texels = uv_texels(uv_coords, uv_faces, config.uv_size)
        vertex_faces, vertex_bary = vertex_anchors(faces, vertex_count)
        self.vertex_count, self.texel_count = vertex_count, len(texels.face_ids)
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.int64))
        self.register_buffer("anchor_faces", torch.as_tensor(
            np.concatenate([vertex_faces, texels.face_ids]), dtype=torch.int64))
        self.register_buffer("anchor_bary", torch.as_tensor(
            np.concatenate([vertex_bary, texels.bary]), dtype=torch.float32))
        self.register_buffer("texel_index", torch.as_tensor(
            texels.rows * config.uv_size + texels.cols, dtype=torch.int64))
        c = config
        self.encoder = appearance_encoder(c.encoder, c.encoder_vit, c.features, c.identity,
                                          c.width, c.depth)
        self.vertex_features = nn.Parameter(0.1 * torch.randn(vertex_count, c.vertex_features))
        self.template_head = mlp(c.features + c.vertex_features + c.identity, 128,
                                 ATTRIBUTES + c.latent)
        self.uv_unet = UNet(3 + c.features + 1, 64, c.width, c.depth, code=c.identity)
        self.uv_base = nn.Parameter(torch.zeros(1, 16, c.uv_size, c.uv_size))
        self.uv_head = nn.Sequential(nn.Conv2d(64 + 16, 64, 1), nn.SiLU(),
                                     nn.Conv2d(64, ATTRIBUTES + c.latent, 1))
        self.refiner = UNet(c.latent + 1, 3, c.width, c.depth)
        # Start near the biases: grey, half-opaque Gaussians, and a refiner that passes the
        # splatted colours through.
        for head in (self.template_head[-1], self.uv_head[-1], self.refiner.out):
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, image: torch.Tensor, source_vertices: torch.Tensor,
                source_K: torch.Tensor, target_vertices: torch.Tensor, target_K: torch.Tensor
                ) -> tuple[Rendering, Avatar]:
        """Build from the source and render the target in one call (what training runs)."""
        avatar = self.build(image, source_vertices, source_K)
        return self.render(avatar, target_vertices, target_K, *image.shape[-2:]), avatar

    def build(self, image: torch.Tensor, vertices: torch.Tensor, K: torch.Tensor) -> Avatar:
        """The avatar of sources ``image`` (B, 3, H, W) in [0, 1], background black, whose
        bodies are ``vertices`` (B, V, 3) in their cameras' frames, intrinsics K (B, 3, 3)."""
        features, identity = self.encoder(image)
        height, width = image.shape[-2:]
        at_vertices = sample_at(features, vertices, K, height, width)
        batch = image.shape[0]
        template = self.template_head(torch.cat([
            at_vertices, self.vertex_features.expand(batch, -1, -1),
            identity[:, None].expand(-1, self.vertex_count, -1)], -1))
        template = torch.cat([torch.zeros_like(template[..., _OFFSET]),
                              template[..., _OFFSET.stop:]], -1)  # vertices stay on the mesh
        uv = self._uv_gaussians(image, features, identity, vertices, K)
        return _activate(torch.cat([template, uv], 1))

    def render(self, avatar: Avatar, vertices: torch.Tensor, K: torch.Tensor, height: int,
               width: int) -> Rendering:
        """The avatar in target bodies ``vertices`` (B, V, 3) (camera frames), intrinsics K."""
        means, quats, scales = rig(vertices, self.faces, self.anchor_faces,
                                   self.anchor_bary.to(vertices.dtype), avatar.offsets,
                                   avatar.quats, avatar.scales)
        viewmats = torch.eye(4, dtype=means.dtype, device=means.device).expand(len(means), 4, 4)
        latent, alpha = rasterize(means, quats, scales, avatar.opacities, avatar.colors,
                                  viewmats, K.to(means.dtype), width, height)
        latent, alpha = latent.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)
        # The refiner corrects the splatted colours (in logits), rather than painting anew.
        raw = latent[:, :3]
        correction = self.refiner(torch.cat([latent, alpha], 1))
        refined = torch.sigmoid(torch.logit(raw.clamp(1e-3, 1 - 1e-3)) + correction)
        return Rendering(refined, raw, alpha)

    def _uv_gaussians(self, image, features, identity, vertices, K) -> torch.Tensor:
        """(B, T, attributes) of the texels: what the source shows of each, inpainted."""
        size, batch = self.config.uv_size, image.shape[0]
        points = surface_points(vertices, self.faces, self.anchor_faces[self.vertex_count:],
                                self.anchor_bary[self.vertex_count:].to(vertices.dtype))
        seen = seen_by_camera(points, vertices, self.faces, K, *image.shape[-2:])
        sampled = sample_at(torch.cat([image, features], 1), points, K, *image.shape[-2:])
        sampled = torch.cat([sampled, torch.ones_like(sampled[..., :1])], -1) * seen[..., None]
        texture = sampled.new_zeros(batch, size * size, sampled.shape[-1])
        texture = texture.index_copy(1, self.texel_index, sampled)
        texture = texture.transpose(1, 2).reshape(batch, -1, size, size)
        filled = self.uv_unet(texture, identity)
        maps = self.uv_head(torch.cat([filled, self.uv_base.expand(batch, -1, -1, -1)], 1))
        return maps.flatten(2).transpose(1, 2)[:, self.texel_index]


def _project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (B, N, 2) of camera-frame points (B, N, 3)."""
    z = points[..., 2:].clamp_min(1e-6)
    return (points[..., :2] / z) * K[:, None, [0, 1], [0, 1]] + K[:, None, :2, 2]


def sample_at(maps: torch.Tensor, points: torch.Tensor, K: torch.Tensor, height: int,
            width: int) -> torch.Tensor:
    """Bilinear samples (B, N, C) of maps (B, C, H, W) where points project."""
    pixels = _project(points, K)
    grid = torch.stack([pixels[..., 0] / width, pixels[..., 1] / height], -1) * 2 - 1
    sampled = nn.functional.grid_sample(maps, grid[:, :, None].to(maps.dtype),
                                        align_corners=False)
    return sampled[..., 0].transpose(1, 2)


@torch.no_grad()
def seen_by_camera(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                   K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N) whether each surface point is the nearest surface where it projects."""
    seen = []
    for b in range(len(points)):
        screen = mesh_raster.project(vertices[b], float(K[b, 0, 0]),
                                     (float(K[b, 0, 2]), float(K[b, 1, 2])))
        depth = mesh_raster.rasterize(screen, faces, height, width).depth
        pixels = _project(points[b:b + 1], K[b:b + 1])[0]
        column, row = pixels.floor().long().unbind(-1)
        inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
        surface = depth[row.clamp(0, height - 1), column.clamp(0, width - 1)]
        seen.append(inside & (points[b, :, 2] <= surface + SEEN_TOLERANCE))
    return torch.stack(seen).to(points.dtype)


def _activate(raw: torch.Tensor) -> Avatar:
    """Network outputs (B, G, attributes) -> Gaussians: unit rotations (identity at zero),
    bounded positive scales, opacities in (0, 1), colours with RGB in (0, 1)."""
    identity = torch.tensor([1.0, 0, 0, 0], dtype=raw.dtype, device=raw.device)
    colors = raw[..., ATTRIBUTES:]
    return Avatar(
        offsets=raw[..., _OFFSET],
        quats=nn.functional.normalize(raw[..., _ROTATION] + identity, dim=-1),
        scales=MAX_SCALE * torch.sigmoid(raw[..., _SCALE] - 2.0),
        opacities=torch.sigmoid(raw[..., _OPACITY]),
        colors=torch.cat([torch.sigmoid(colors[..., :3]), colors[..., 3:]], -1))

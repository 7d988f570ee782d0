"""3D Gaussians to screen-space splats: the maths of 3D Gaussian splatting's classic mode (as
gsplat 1.5 computes it), in torch, differentiable, on any device.

A Gaussian has a mean, a rotation (unit quaternion, w x y z), per-axis scales and an opacity; its
covariance is R S Sᵀ Rᵀ. In the camera frame (x right, y down, z forward: OpenCV, as the rest of
the project) it projects by the local affine approximation of the perspective map (EWA
splatting): Σ' = J Σ_cam Jᵀ + ε I, where ε (0.3 px²) is a low-pass filter that keeps every splat
at least about a pixel wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...body.rotations import quaternion_to_matrix

# Screen-space low-pass filter added to every projected covariance (pixels²).
EPS2D = 0.3
# A splat's footprint reaches this many standard deviations along each screen axis: beyond it
# its alpha is below ALPHA_MIN even at full opacity (exp(-3.33² / 2) < 1/255).
FOOTPRINT_SIGMAS = 3.33
# How far outside the view (as a fraction of the half field of view) a Gaussian's centre may be
# before its Jacobian is taken at the border instead: keeps splats of off-screen Gaussians from
# blowing up near the image edge.
VIEW_MARGIN = 0.3


@dataclass
class Splats:
    """Gaussians projected into B images: (B, N, ...) each; culled Gaussians have radii 0."""

    means2d: torch.Tensor  # (B, N, 2) pixels
    conics: torch.Tensor  # (B, N, 3) the inverse screen covariance's (a, b, c): [[a, b], [b, c]]
    depths: torch.Tensor  # (B, N) camera z
    radii: torch.Tensor  # (B, N, 2) footprint half-sizes in whole pixels (x, y), int
    opacities: torch.Tensor  # (B, N)


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """3D covariances (..., 3, 3) = R S Sᵀ Rᵀ of rotations (..., 4) and scales (..., 3)."""
    rs = quaternion_to_matrix(quats) * scales[..., None, :]
    return rs @ rs.transpose(-1, -2)


def project_gaussians(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                      opacities: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                      width: int, height: int, near: float = 0.01, far: float = 1e10,
                      eps2d: float = EPS2D) -> Splats:
    """Project (B, N, ...) Gaussians with world-to-camera matrices (B, 4, 4) and intrinsics
    (B, 3, 3). Gaussians outside (near, far) or whose footprint misses the image are culled."""
    rotation, translation = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]
    cam = (rotation @ means[..., None])[..., 0] + translation
    cov = rotation @ covariances(quats, scales) @ rotation.transpose(-1, -2)
    x, y, z = cam.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    in_front = (z > near) & (z < far)
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    # The Jacobian of the perspective map, taken no further out than the view's margin.
    margin_x, margin_y = VIEW_MARGIN * 0.5 * width / fx, VIEW_MARGIN * 0.5 * height / fy
    tx = safe_z * torch.clamp(x / safe_z, -(cx / fx + margin_x), (width - cx) / fx + margin_x)
    ty = safe_z * torch.clamp(y / safe_z, -(cy / fy + margin_y), (height - cy) / fy + margin_y)
    zeros = torch.zeros_like(safe_z)
    jacobian = torch.stack([fx / safe_z, zeros, -fx * tx / safe_z**2,
                            zeros, fy / safe_z, -fy * ty / safe_z**2], -1).reshape(*z.shape, 2, 3)
    cov2d = jacobian @ cov @ jacobian.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] ** 2
    valid = in_front & (det > 0)
    safe_det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([cov2d[..., 1, 1], -cov2d[..., 0, 1], cov2d[..., 0, 0]], -1)
    conics = conics / safe_det[..., None]
    means2d = torch.stack([fx * x / safe_z + cx, fy * y / safe_z + cy], -1)
    diagonal = torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], -1).detach().clamp(min=0)
    radii = torch.ceil(FOOTPRINT_SIGMAS * diagonal.sqrt()).to(torch.int64)
    centre = means2d.detach()
    on_screen = ((centre[..., 0] + radii[..., 0] > 0) & (centre[..., 0] - radii[..., 0] < width)
                 & (centre[..., 1] + radii[..., 1] > 0) & (centre[..., 1] - radii[..., 1] < height))
    radii = torch.where((valid & on_screen)[..., None], radii, torch.zeros_like(radii))
    return Splats(means2d, conics, safe_z, radii, opacities)

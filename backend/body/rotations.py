"""Rotation conversions used by the body model (torch, batched, differentiable)."""

from __future__ import annotations

import torch

# Added under the square root so the angle (and its gradient) is finite at the zero rotation.
_ANGLE_EPS = 1e-16


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: (..., 3) axis-angle vectors to (..., 3, 3) rotation matrices."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    angle = torch.sqrt(angle_sq + _ANGLE_EPS)
    # sin(t)/t and (1-cos(t))/t^2 by their Taylor series near zero, where division is unstable.
    small = angle_sq < 1e-8
    safe_angle = torch.where(small, torch.ones_like(angle), angle)
    sinc = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(safe_angle) / safe_angle)
    cosc = torch.where(
        small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(safe_angle)) / (safe_angle * safe_angle)
    )
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sinc[..., None] * skew + cosc[..., None] * (skew @ skew)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices to (..., 3) axis-angle vectors (angle in [0, pi]).

    Its gradient is finite everywhere, the identity and half turns included (training
    backpropagates through it): the angle comes from atan2, not acos, whose slope is infinite
    at +-1, and every branch divides only by quantities kept away from zero, since a branch
    ``torch.where`` does not pick still passes 0 x its gradient back, NaN when that is inf."""
    trace = matrix[..., 0, 0] + matrix[..., 1, 1] + matrix[..., 2, 2]
    cos = (trace - 1.0) / 2.0
    vee = torch.stack(
        [
            matrix[..., 2, 1] - matrix[..., 1, 2],
            matrix[..., 0, 2] - matrix[..., 2, 0],
            matrix[..., 1, 0] - matrix[..., 0, 1],
        ],
        dim=-1,
    )
    sin = 0.5 * torch.sqrt((vee * vee).sum(-1).clamp_min(1e-24))  # |vee| = 2 sin(angle)
    angle = torch.atan2(sin, cos)
    general = vee * (angle / (2.0 * sin))[..., None]
    small = vee / 2.0  # angle ~ 0: R ~ I + [w]x
    # Near pi the vee vector vanishes: recover the axis from the symmetric part instead.
    sym = (matrix + matrix.transpose(-1, -2)) / 2.0 - cos[..., None, None] * torch.eye(
        3, dtype=matrix.dtype, device=matrix.device
    )
    column = torch.argmax(torch.diagonal(sym, dim1=-2, dim2=-1), dim=-1)
    axis = torch.gather(sym, -1, column[..., None, None].expand(*sym.shape[:-1], 1)).squeeze(-1)
    axis = axis / torch.sqrt((axis * axis).sum(-1, keepdim=True).clamp_min(1e-24))
    axis = axis * torch.sign((axis * vee).sum(-1, keepdim=True) + 1e-30)
    near_pi = axis * angle[..., None]
    return torch.where(
        (angle < 1e-4)[..., None], small, torch.where((angle > 3.1)[..., None], near_pi, general)
    )


def rotation_6d_to_matrix(six: torch.Tensor) -> torch.Tensor:
    """(..., 6) continuous rotation representation (Zhou et al. 2019: the matrix's first two
    columns, made orthonormal by Gram-Schmidt) to (..., 3, 3) rotation matrices."""
    a, b = six[..., :3], six[..., 3:]
    x = torch.nn.functional.normalize(a, dim=-1)
    y = torch.nn.functional.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1)
    return torch.stack([x, y, torch.cross(x, y, dim=-1)], dim=-1)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices to their (..., 6) first two columns."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)

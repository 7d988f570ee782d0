"""Rotation conversions for the body model and the Gaussian renderer (torch, batched,
differentiable). Quaternions are (w, x, y, z), as gsplat has them."""

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


def quaternion_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of quaternions (..., 4) (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4), w >= 0, of rotation matrices (..., 3, 3).

    Each of w, x, y, z can be read off the diagonal; the largest is computed from it (it is at
    least 1/2, so dividing by it is safe) and the other three from the off-diagonal terms. The
    square roots are clamped, so branches ``torch.where`` does not pick pass finite gradients.
    """
    m = matrix
    trace_terms = torch.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
                               1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                               1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                               1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    magnitude = 0.5 * torch.sqrt(trace_terms.clamp_min(1e-12))  # |w|, |x|, |y|, |z|
    # 4wx, 4wy, 4wz from the antisymmetric part; 4xy, 4xz, 4yz from the symmetric part.
    wx, wy, wz = (m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1])
    xy, xz, yz = (m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 1, 2] + m[..., 2, 1])
    squares = 4 * magnitude**2
    # Row i: 4 q_i times the quaternion, from the formulas that hold when q_i is the largest.
    candidates = torch.stack([torch.stack([squares[..., 0], wx, wy, wz], -1),
                              torch.stack([wx, squares[..., 1], xy, xz], -1),
                              torch.stack([wy, xy, squares[..., 2], yz], -1),
                              torch.stack([wz, xz, yz, squares[..., 3]], -1)], -2)
    candidates = candidates / (4 * magnitude.clamp_min(0.1))[..., None]
    best = magnitude.argmax(-1)
    quats = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    return quats * torch.where(quats[..., :1] < 0, -1.0, 1.0)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Hamilton product a ⊗ b (..., 4): the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)

"""Priors that keep fitted bodies human without a learned pose prior (the public ones are trained
on SMPL-licensed data): hinge limits on knees and elbows, angle bounds on every other joint,
weak pulls toward rest, and expression coefficients kept in their parameter's range."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

# Largest plausible rotation (radians) of each joint from the rest pose, by name fragment.
_ANGLE_BOUNDS = {"spine": 0.9, "neck": 1.0, "head": 1.0, "collar": 0.6, "shoulder": 2.6,
                 "hip": 2.3, "wrist": 1.6, "ankle": 1.0, "foot": 0.8, "thumb": 1.6,
                 "index": 1.7, "middle": 1.7, "ring": 1.7, "pinky": 1.7, "eye": 0.6, "jaw": 0.5}
_FLEXION_MAX = math.radians(155)


def angle_bounds(joint_names: list[str]) -> torch.Tensor:
    bounds = []
    for name in joint_names:
        bounds.append(next((b for key, b in _ANGLE_BOUNDS.items() if key in name), 2.0))
    return torch.tensor(bounds)


# Each hinge by name: the joint above it, the joint below it, and which way along the body's
# forward axis (model frame: +Z) the lower limb swings as it bends.
_HINGES = {"knee": ("hip", "ankle", -1.0), "elbow": ("shoulder", "wrist", 1.0)}


def _hinge_joints(joint_names: list[str]) -> Iterator[tuple[int, int, int, float]]:
    """(hinge, joint above, joint below, forward sign) indices for both sides' knees and
    elbows."""
    for side in ("left", "right"):
        for joint, (above, below, sign) in _HINGES.items():
            yield (joint_names.index(f"{side}_{joint}"), joint_names.index(f"{side}_{above}"),
                   joint_names.index(f"{side}_{below}"), sign)


def hinge_axes(rest_joints: torch.Tensor, joint_names: list[str]) -> dict[int, torch.Tensor]:
    """Flexion axis of each knee and elbow from the rest skeleton: knees bend the shin back,
    elbows bring the forearm forward (model frame: +Z forward)."""
    axes = {}
    forward = torch.tensor([0.0, 0.0, 1.0], dtype=rest_joints.dtype)
    for j, _, c, sign in _hinge_joints(joint_names):
        bone = torch.nn.functional.normalize(rest_joints[c] - rest_joints[j], dim=0)
        axes[j] = torch.nn.functional.normalize(torch.linalg.cross(bone, sign * forward), dim=0)
    return axes


def rest_flexion(rest_joints: torch.Tensor, joint_names: list[str],
                 axes: dict[int, torch.Tensor]) -> dict[int, float]:
    """How far each hinge of ``axes`` (``hinge_axes``) is already bent in the rest pose,
    radians about its axis: the thigh-to-shin or upper-arm-to-forearm angle. SMPL-X rests
    straight (0); the open asset's arms rest bent 42 degrees, so straightening them is
    negative flexion."""
    bent = {}
    for joint, above, below, _ in _hinge_joints(joint_names):
        if joint not in axes:
            continue
        upper = rest_joints[joint] - rest_joints[above]
        lower = rest_joints[below] - rest_joints[joint]
        axis = axes[joint].to(rest_joints)
        bent[joint] = float(torch.atan2((torch.linalg.cross(upper, lower) * axis).sum(),
                                        (upper * lower).sum()))
    return bent


def joint_limit_loss(local: torch.Tensor, bounds: torch.Tensor,
                     hinges: dict[int, torch.Tensor],
                     rest_bend: torch.Tensor | None = None) -> torch.Tensor:
    """local: (T, J, 3) axis-angle per joint (model layout). Squared hinge penalties; a hinge
    flexes from straight to ``_FLEXION_MAX``, measured from the rest pose's own bend
    (``rest_bend``: (H,) radians in the order of ``hinges``, ``rest_flexion``; None: the rest
    pose is straight).

    ``local`` may hold only some joints (those a parameter drives, with ``bounds`` and the
    ``hinges`` keys in its order): a joint at rest costs nothing."""
    angle = local.norm(dim=-1)
    loss = torch.relu(angle - bounds.to(local)).square().sum()
    if hinges:
        # All hinges at once: flexion about each axis, the rest of the rotation sideways.
        axes = torch.stack(list(hinges.values())).to(local)  # (H, 3)
        rotation = local[:, list(hinges)]  # (T, H, 3)
        along = (rotation * axes).sum(-1)
        sideways = rotation - along[..., None] * axes
        flexion = along if rest_bend is None else along + rest_bend.to(local)
        penalty = (torch.relu(-flexion).square() + torch.relu(flexion - _FLEXION_MAX).square()
                   + torch.relu(sideways.norm(dim=-1) - 0.25).square())
        loss = loss + 10 * penalty.sum()
    return loss


def range_loss(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Penalty for coefficients leaving their parameter's range (e.g. ARKit weights, [0, 1])."""
    return (torch.relu(low - values) + torch.relu(values - high)).square().sum()

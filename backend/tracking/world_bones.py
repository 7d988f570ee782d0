"""The tracker's 3D term from MediaPipe's metric pose (``pose_world_landmarks``): the direction
of each limb as BlazePose saw it, which fixes what 2D keypoints cannot (a forearm toward or
away from the camera projects alike).

Directions only, never positions: the detector's metric scale and its hip-centred origin do
not match the fitted body's, but which way a bone points does. BlazePose sees a crop around the
person, so its axes are a camera looking straight at the person; the fitted body's bones are
turned into that view (the rotation taking the ray through the hips onto the optical axis)
before they are compared. Pure torch, no I/O.
"""

from __future__ import annotations

import torch

from ..conventions import KEYPOINT_SEEN

# BlazePose bones (landmark index pairs, parent -> child): shoulders and hips across, the
# torso's sides, upper arms, forearms, thighs and shins. Not the feet: on rendered clips with
# exact answers they are MediaPipe's worst bones from every side (18-24 degrees off from the
# front, 91-94 from behind, where it turns the toes toward the camera), and the 2D heel and
# toe points already orient them (docs/tracker.md).
WORLD_BONES = ((11, 12), (23, 24), (11, 23), (12, 24), (11, 13), (13, 15), (12, 14), (14, 16),
               (23, 25), (25, 27), (24, 26), (26, 28))
HIPS = (23, 24)
_MIN_LENGTH = 0.02  # metres: a shorter detected bone has no usable direction


def bone_vectors(points: torch.Tensor) -> torch.Tensor:
    """(T, 33, 3) BlazePose points -> (T, B, 3) child minus parent for ``WORLD_BONES``."""
    parents, children = zip(*WORLD_BONES, strict=True)
    return points[:, list(children)] - points[:, list(parents)]


def world_targets(world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 33, 4) metric pose (x, y, z, visibility) -> unit bone directions (T, B, 3) and each
    bone's confidence (T, B): the lower visibility of its ends, 0 where either end is unseen or
    the bone too short to point anywhere (frames without a detection are all zero)."""
    vectors = bone_vectors(world[..., :3])
    length = vectors.norm(dim=-1)
    parents, children = zip(*WORLD_BONES, strict=True)
    confidence = torch.minimum(world[:, list(parents), 3], world[:, list(children), 3])
    usable = (confidence > KEYPOINT_SEEN) & (length > _MIN_LENGTH)
    directions = vectors / length.clamp_min(_MIN_LENGTH)[..., None]
    return directions, torch.where(usable, confidence, torch.zeros_like(confidence))


def crop_view(points: torch.Tensor) -> torch.Tensor:
    """(T, 3, 3) rotations taking each frame's ray through the hips' midpoint of ``points``
    (T, 33, 3, camera frame) onto the optical axis: the axes of a camera looking straight at
    the person, as a detector working on the person's crop sees them."""
    ray = points[:, list(HIPS)].mean(1)
    ray = ray / ray.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    axis = torch.zeros_like(ray)
    axis[:, 2] = 1.0
    v = torch.linalg.cross(ray, axis)
    c = (ray * axis).sum(-1)
    skew = torch.zeros(*ray.shape[:-1], 3, 3, dtype=ray.dtype, device=ray.device)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    skew = skew - skew.transpose(1, 2)
    eye = torch.eye(3, dtype=ray.dtype, device=ray.device)
    # Rodrigues' formula for the rotation between two unit vectors (never opposite here: the
    # person is in front of the camera).
    return eye + skew + skew @ skew / (1 + c)[:, None, None]


def world_bone_cost(points: torch.Tensor, directions: torch.Tensor, confidence: torch.Tensor,
                    sigma: float, depth_only: bool = False) -> torch.Tensor:
    """Per frame (T,) robust cost of the fitted bones (``points``: (T, 33, 3) BlazePose
    points in the camera frame) against the detected directions: Geman-McClure on the chord
    between unit directions (2 sin(angle / 2)), scaled to cost chord^2 when small and at most
    ``sigma``^2, so a limb the detector got wrong cannot drag the fit far; confidence-weighted
    and averaged over the bones. ``depth_only``: only the directions' components along the
    crop's optical axis are compared (how far each bone points toward or away from the
    camera), leaving where it points in the image to the 2D keypoints."""
    vectors = bone_vectors(points) @ crop_view(points).transpose(1, 2)
    fitted = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    if depth_only:
        chord2 = (fitted[..., 2] - directions[..., 2]).square()
    else:
        chord2 = (fitted - directions).square().sum(-1)
    robust = chord2 * sigma**2 / (sigma**2 + chord2)
    return (confidence * robust).sum(-1) / len(WORLD_BONES)

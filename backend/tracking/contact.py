"""Feet on the ground: the ground plane of a clip, when each foot touches it, and the cost that
keeps a touching foot still and every foot above the ground (the tracker's contact stage).

Works on the fitted feet in the camera frame (the camera does not move during a clip, so that
is a world frame). The ground is the plane the feet stand still on (``estimate_ground``). A
foot point is in contact while it is near its own resting height (the ankle
rests higher than the toes) and slow, with hysteresis so contacts do not flicker. Pure numpy
and torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body.rotations import axis_angle_to_matrix
from ..camera import MODEL_TO_CAMERA

# The points that touch the ground are conventions.FOOT_JOINTS: SMPL-X's ankles (the heel's
# joint) and feet (the ball).
FOOT_PAIRS = ((0, 1), (2, 3))  # points of FOOT_JOINTS that rest at one height: left and right
ENTER_HEIGHT, EXIT_HEIGHT = 0.03, 0.06  # metres above the point's resting height
ENTER_SPEED, EXIT_SPEED = 0.25, 0.5  # metres per second
MIN_FRAMES = 3  # shorter contacts are noise
_SPREAD = 0.2  # metres: still feet must cover this much floor (either way) to tilt the plane


@dataclass(frozen=True)
class Ground:
    normal: np.ndarray  # (3,) unit, pointing up, camera frame
    offset: float  # height of a point p: normal @ p + offset
    resting: np.ndarray  # (P,) each foot point's resting height above the plane

    def heights(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) -> (...) metres above the plane."""
        return points @ self.normal + self.offset


def estimate_ground(points: np.ndarray, up: np.ndarray, fps: float,
                    pairs: tuple[tuple[int, ...], ...] | None = None) -> Ground:
    """The ground under ``points`` (T, P, 3): foot points in the camera frame over a clip;
    ``up``: the body's mean up direction there (a first guess at the normal); ``pairs``: groups
    of points that rest at one height (left and right ankle; default: each point alone).

    A foot point that stands still is on the floor (at its own height above it: the ankle
    higher than the ball), whatever the floor's tilt, so the plane is fitted to the still
    samples of each group about the group's mean: their spread spans the floor (the two feet
    of a straight walk give its width). Where they cover a line only, the normal is the body's
    up made perpendicular to that line; where they cover a spot (standing), the body's up."""
    guess = up / np.linalg.norm(up)
    speed = np.linalg.norm(np.gradient(points, axis=0), axis=-1) * fps if len(points) > 1 \
        else np.zeros(points.shape[:2])
    still = speed < ENTER_SPEED
    groups = pairs or tuple((p,) for p in range(points.shape[1]))
    samples = [np.concatenate([points[still[:, p], p] for p in group]) for group in groups]
    centred = np.concatenate([s - s.mean(0) for s in samples if len(s) >= 2]
                             or [np.zeros((1, 3))])
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    if values[1] >= _SPREAD**2 / 12:  # a patch of floor
        normal = vectors[:, 0]
    elif values[2] >= _SPREAD**2 / 12:  # a line of floor
        line = vectors[:, 2]
        normal = guess - (guess @ line) * line
    else:
        normal = guess
    normal = normal * np.sign(normal @ guess) / np.linalg.norm(normal)
    heights = points @ normal
    resting = np.array([np.median(heights[still[:, p], p]) if still[:, p].any()
                        else np.percentile(heights[:, p], 10) for p in range(points.shape[1])])
    offset = -float(resting.min())
    return Ground(normal, offset, resting + offset)


def ground_and_contacts(points: np.ndarray, global_orient: torch.Tensor, fps: float,
                        speeds: tuple[float, float] = (ENTER_SPEED, EXIT_SPEED)
                        ) -> tuple[Ground, np.ndarray]:
    """The ground under foot points (T, P, 3), camera frame (``FOOT_JOINTS``), its normal
    first guessed as the body's mean up (``global_orient``: (T, 3) axis-angle, model frame),
    and each point's contacts with it (``detect_contacts`` at ``speeds``)."""
    up_model = axis_angle_to_matrix(global_orient.reshape(-1, 3))[:, :, 1]
    up = up_model.mean(0).cpu().double().numpy() @ np.array(MODEL_TO_CAMERA).T
    ground = estimate_ground(points, up, fps, FOOT_PAIRS)
    return ground, detect_contacts(points, ground, fps, speeds)


def detect_contacts(points: np.ndarray, ground: Ground, fps: float,
                    speeds: tuple[float, float] = (ENTER_SPEED, EXIT_SPEED)) -> np.ndarray:
    """(T, P) bool: each foot point's contact with ``ground``, frame by frame: it starts when
    the point is within ``ENTER_HEIGHT`` of its resting height and slower than ``speeds[0]``
    (m/s), lasts while within ``EXIT_HEIGHT`` and slower than ``speeds[1]``, and counts only
    when it lasts ``MIN_FRAMES``."""
    enter_speed, exit_speed = speeds
    above = ground.heights(points) - ground.resting
    speed = np.linalg.norm(np.gradient(points, axis=0), axis=-1) * fps
    contacts = np.zeros(above.shape, bool)
    for point in range(points.shape[1]):
        touching = False
        for t in range(len(points)):
            if touching:
                touching = above[t, point] < EXIT_HEIGHT and speed[t, point] < exit_speed
            else:
                touching = above[t, point] < ENTER_HEIGHT and speed[t, point] < enter_speed
            contacts[t, point] = touching
        contacts[:, point] = _drop_short_runs(contacts[:, point], MIN_FRAMES)
    return contacts


def _drop_short_runs(flags: np.ndarray, shortest: int) -> np.ndarray:
    out = flags.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start < shortest:
            out[start:stop] = False
    return out


def contact_cost(points: torch.Tensor, contacts: torch.Tensor, ground: Ground) -> torch.Tensor:
    """Squared metres: how far each contacting foot point moves between consecutive contact
    frames (no sliding), plus how far any foot point sinks below its resting height (no feet
    through the floor). ``points``: (T, P, 3) camera frame; ``contacts``: (T, P) bool."""
    normal = torch.as_tensor(ground.normal, dtype=points.dtype, device=points.device)
    resting = torch.as_tensor(ground.resting, dtype=points.dtype, device=points.device)
    held = contacts[1:] & contacts[:-1]
    slide = ((points[1:] - points[:-1]).square().sum(-1) * held).sum()
    sink = (resting - (points @ normal + ground.offset)).clamp_min(0).square().sum()
    return slide + sink


def foot_skate_mm(points: np.ndarray, contacts: np.ndarray, normal: np.ndarray) -> float:
    """Mean horizontal travel (mm per frame) of foot points (T, P, 3) between consecutive
    frames both in contact; horizontal: across ``normal``. NaN without contacts."""
    step = points[1:] - points[:-1]
    horizontal = step - (step @ normal)[..., None] * normal
    held = contacts[1:] & contacts[:-1]
    if not held.any():
        return float("nan")
    return float(np.linalg.norm(horizontal, axis=-1)[held].mean() * 1000)


def jitter_mm_s2(points: np.ndarray, fps: float) -> float:
    """Mean magnitude of the acceleration of points (T, K, 3) in metres, in mm/s^2."""
    acceleration = (points[2:] - 2 * points[1:-1] + points[:-2]) * fps**2
    return float(np.linalg.norm(acceleration, axis=-1).mean() * 1000)

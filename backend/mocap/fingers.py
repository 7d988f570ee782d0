"""Hand poses from a small finger model: per finger a curl and a spread within per-finger
ranges, turned into the 15 local joint rotations of each hand.

The motion-capture clips barely move their fingers, so hands come from here. Per hand, one
curl level (open hand to fist) and one spread level (fingers together to fanned) are drawn;
each finger varies its curl around the hand's. Finger joint k of a finger flexes by
curl x (its joint's angle bound in the tracker's priors) about the finger's flexion axis (across
the finger, in the palm plane), so the finger curls toward the palm; the finger's first joint
also turns by spread x (its fan angle) about the palm normal. Axes come from the body model's
rest hand, so the model works for any asset with the SMPL-X hand joints, whatever its rest pose.
Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .retarget import AssetSkeleton

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
SIDES = ("left", "right")


@dataclass(frozen=True)
class FingerRange:
    curl: tuple[float, float]  # fraction of each joint's angle bound: 0 straight, 1 the bound
    fan: float  # radians the knuckle turns in the palm's plane at full spread; + toward the thumb


# The thumb's three joints curl less than a finger's (the bound is per joint); fingers stop
# just short of their bound so that curl and spread together stay inside it.
FINGER_RANGES: dict[str, FingerRange] = {
    "thumb": FingerRange((0.0, 0.5), 0.35),
    "index": FingerRange((0.0, 0.95), 0.2),
    "middle": FingerRange((0.0, 0.95), 0.0),
    "ring": FingerRange((0.0, 0.95), -0.12),
    "pinky": FingerRange((0.0, 0.95), -0.25),
}
FINGER_CURL_SPREAD = 0.15  # how far a finger's curl strays from its hand's (sd, in curl units)


@dataclass(frozen=True)
class HandAxes:
    joints: tuple[int, ...]  # the hand's 15 joints, in the order of its pose parameter
    fingers: tuple[str, ...]  # the finger of each joint
    flexion: np.ndarray  # (15, 3) flexion axis of each joint (its finger's)
    spread_axis: np.ndarray  # (3,) turning a finger about it moves it toward the thumb side


class FingerModel:
    """Draws ``left_hand_pose`` and ``right_hand_pose`` (15, 3 axis-angle each)."""

    def __init__(self, skeleton: AssetSkeleton, hand_joints: dict[str, list[int]],
                 angle_bounds: np.ndarray):
        """``hand_joints``: side -> that hand's pose-parameter joints; ``angle_bounds``: (J,)
        the largest plausible rotation of each joint (``backend.tracking.priors``)."""
        self.bounds = np.asarray(angle_bounds, dtype=np.float64)
        self.hands = {side: hand_axes(skeleton, side, hand_joints[side]) for side in SIDES}
        self._first = {side: [skeleton.joint_names[j].endswith("1") for j in axes.joints]
                       for side, axes in self.hands.items()}

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One pose per hand: ``{"left_hand_pose": (15, 3), "right_hand_pose": (15, 3)}``."""
        return {f"{side}_hand_pose": self.hand_pose(side, *self.draw_levels(rng))
                for side in SIDES}

    @staticmethod
    def draw_levels(rng: np.random.Generator) -> tuple[dict[str, float], float]:
        """Per-finger curl levels in [0, 1] and the hand's spread level in [0, 1]."""
        hand = rng.uniform()
        curl = np.clip(hand + rng.normal(0, FINGER_CURL_SPREAD, len(FINGERS)), 0, 1)
        return dict(zip(FINGERS, curl.tolist(), strict=True)), float(rng.uniform())

    def hand_pose(self, side: str, curl: dict[str, float], spread: float) -> np.ndarray:
        """(15, 3) local rotations of one hand for per-finger curl levels (in [0, 1], mapped
        into each finger's curl range) and a spread level in [0, 1]."""
        axes = self.hands[side]
        pose = np.zeros((len(axes.joints), 3))
        for row, (joint, finger) in enumerate(zip(axes.joints, axes.fingers, strict=True)):
            limits = FINGER_RANGES[finger]
            level = limits.curl[0] + curl[finger] * (limits.curl[1] - limits.curl[0])
            rotation = Rotation.from_rotvec(axes.flexion[row] * level * self.bounds[joint])
            if self._first[side][row]:  # the knuckle also fans the finger out
                rotation = Rotation.from_rotvec(axes.spread_axis * spread * limits.fan) * rotation
            pose[row] = rotation.as_rotvec()
        return pose


def hand_axes(skeleton: AssetSkeleton, side: str, joints: list[int]) -> HandAxes:
    """Flexion and spread axes of one hand from the rest skeleton."""
    rest, names = skeleton.rest_joints, skeleton.joint_names

    def at(name: str) -> np.ndarray:
        return rest[skeleton.index(f"{side}_{name}")]

    wrist = at("wrist")
    across = np.cross(at("index1") - wrist, at("pinky1") - wrist)
    # The palm faces away from that cross product on the left hand and along it on the right.
    palm_normal = _unit(-across if side == "left" else across)
    fingers = tuple(next(f for f in FINGERS if f in names[j]) for j in joints)
    flexion = np.stack([_unit(np.cross(at(f"{f}3") - at(f"{f}1"), palm_normal))
                        for f in fingers])
    spread_axis = _unit(np.cross(at("middle1") - wrist, at("index1") - at("pinky1")))
    return HandAxes(tuple(joints), fingers, flexion, spread_axis)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)

"""Stage-1 augmentation: HMR2's list with its magnitudes, done so that every label stays exact
for the crop's CLIFF camera, plus compositing RGBA renders onto fresh backgrounds with random
occluders. One ``Augmenter`` is the loader's ``prepare``: (raw sample, generator) -> sample.

In order, with N = N(0, 1):

1. flip left/right with p 0.5 (``flip``: the image, the box mirrored about the principal
   point, and every label swapped: joints, hands, eyes, ARKit expressions, landmarks);
2. extreme crop with p 0.1: the box shrinks to one body part (head, head and shoulders, upper
   body, torso, legs, one arm, one leg);
3. scale the box by 1 + 0.3 clip(N, +-1) and shift it by 0.02 clip(N, +-1) of its width and
   height; with p 0.6 turn the camera by 30 deg clip(N, +-2) about the ray through the box
   centre (``recrop``: one warp from the stored crop, so a zoom-out shows background;
   keypoints the crop cuts off lose their label);
4. an RGBA render goes over a fresh background (``backgrounds``), then with p 0.4 one to three
   textured occluders (keypoints under them lose their label: ``composite``);
5. each colour channel times U(0.8, 1.2).

Everything random comes from the generator passed in, so a sample's augmentation depends only
on the seed it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from backend.body.asset import Asset
from backend.regressor.crop_camera import CROP_ASPECT, crop_box

from ..forward import JOINTS
from .backgrounds import Backgrounds
from .batch import Sample
from .composite import composite, occlude
from .flip import flip_sample
from .flip_table import build_flip_table
from .recrop import recrop

# Body parts an extreme crop may keep (joint names; HMR2's "aggressive" list, roughly).
EXTREME_CROP_PARTS: dict[str, tuple[str, ...]] = {
    "head": ("head", "jaw", "left_eye_smplhf", "right_eye_smplhf", "neck"),
    "head_and_shoulders": ("head", "jaw", "neck", "left_shoulder", "right_shoulder"),
    "upper_body": ("head", "neck", "left_shoulder", "right_shoulder", "left_elbow",
                   "right_elbow", "left_wrist", "right_wrist", "spine3"),
    "torso": ("neck", "left_shoulder", "right_shoulder", "spine1", "spine2", "spine3",
              "pelvis", "left_hip", "right_hip"),
    "legs": ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
             "left_foot", "right_foot"),
    "left_arm": ("left_shoulder", "left_elbow", "left_wrist"),
    "right_arm": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
}
EXTREME_CROP_PADDING = 1.2  # the part's box grows by this, as a person box does
EXTREME_CROP_MIN = 0.1  # of the original box height: no smaller crop


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5  # probability
    scale: float = 0.3  # box size times 1 + scale * clip(N, +-1)
    translation: float = 0.02  # box centre + translation * clip(N, +-1) * box width / height
    rotation: float = 30.0  # degrees, times clip(N, +-2) ...
    rotation_probability: float = 0.6  # ... this often
    colour: float = 0.2  # each channel times U(1 - colour, 1 + colour)
    extreme_crop: float = 0.1  # probability
    occluders: float = 0.4  # probability of 1..max_occluders occluders
    max_occluders: int = 3
    occluder_size: tuple[float, float] = (0.1, 0.4)  # of the crop height

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation: RGBA samples are only composited (validation)."""
        return cls(flip=0.0, scale=0.0, translation=0.0, rotation=0.0, colour=0.0,
                   extreme_crop=0.0, occluders=0.0)


def _clipped_normal(rng: np.random.Generator, limit: float) -> float:
    return float(np.clip(rng.normal(), -limit, limit))


class Augmenter:
    """The loader's ``prepare`` for one asset: augments a raw sample (RGB, or RGBA composited
    here onto ``backgrounds``) into a training sample. Builds the asset's flip table once."""

    def __init__(self, asset: Asset, config: AugmentConfig | None = None,
                 backgrounds: Backgrounds | None = None):
        self.config = config or AugmentConfig()
        self.backgrounds = backgrounds or Backgrounds()
        self.flip_table = build_flip_table(asset) if self.config.flip > 0 else None
        names = {name: i for i, name in enumerate(asset.joint_names)}
        self.parts = {part: np.array([names[j] for j in joints if j in names])
                      for part, joints in EXTREME_CROP_PARTS.items()}

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        config = self.config
        if self.flip_table is not None and rng.random() < config.flip:
            sample = flip_sample(sample, self.flip_table)
        center, height = np.array(sample.box_center), sample.box_height
        if rng.random() < config.extreme_crop and JOINTS in sample.keypoints2d:
            center, height = self._part_box(sample, rng)
        height *= 1 + config.scale * _clipped_normal(rng, 1)
        center = center + (config.translation * np.array([CROP_ASPECT, 1]) * height
                           * [_clipped_normal(rng, 1), _clipped_normal(rng, 1)])
        angle = 0.0
        if rng.random() < config.rotation_probability:
            angle = np.radians(config.rotation * _clipped_normal(rng, 2))
        sample = recrop(sample, center, height, angle)
        if sample.image.shape[2] == 4:
            sample = composite(sample, self.backgrounds(rng))
        if rng.random() < config.occluders:
            sample = occlude(sample, rng, int(rng.integers(1, config.max_occluders + 1)),
                             config.occluder_size)
        if config.colour:
            gain = rng.uniform(1 - config.colour, 1 + config.colour, 3).astype(np.float32)
            sample = replace(sample, image=(sample.image * gain).clip(0, 255).round()
                             .astype(np.uint8))
        return sample

    def _part_box(self, sample: Sample, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """The crop box (full-frame centre and height) of a random body part whose joints are
        labelled; the sample's own box when none is."""
        joints = sample.keypoints2d[JOINTS]
        for part in rng.permutation(list(self.parts)):
            chosen = joints[self.parts[part]]
            if len(chosen) < 2 or (chosen[:, 2] <= 0).any():
                continue
            pixels = chosen[:, :2] * sample.box_height + sample.box_center
            box = torch.tensor(np.concatenate([pixels.min(0), pixels.max(0)])[None])
            center, height = crop_box(box, EXTREME_CROP_PADDING)
            return center[0].numpy(), max(float(height[0]),
                                          EXTREME_CROP_MIN * sample.box_height)
        return np.array(sample.box_center), sample.box_height

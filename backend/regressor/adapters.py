"""HMR-Adapter-style adapters for the regressor's decoder head: fine-tuning on one actor's
footage without touching the base network.

Beside each frozen decoder layer an attention branch of its own (query/key/value projections,
self-attention over the body query and guidance tokens) adds its output to the layer's; its
output projection starts at zero, so an adapted network starts exactly as its base. Two
guidance paths (HMR-Adapter's dual path):

- **hands into the body**: image features sampled at the base estimate's 2D hand joints
  (wrist and fingers, projected through its own crop camera) are the guidance tokens the body
  query attends to;
- **arms into the hands**: the arm chain's rotations (spine to wrist, the 6D values of the
  base estimate) feed a correction of the hand poses, also zero at the start.

The base runs once as it is (no gradient: it is frozen) to give both paths their estimate;
the adapted head then runs again with the adapters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..body.landmark_model import LandmarkModel
from ..camera import to_camera
from .model import PearRegressor

SIDES = ("left", "right")
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
ARM_CHAIN = ("spine1", "spine2", "spine3", "{side}_collar", "{side}_shoulder", "{side}_elbow",
             "{side}_wrist")
HAND_POSES = ("left_hand_pose", "right_hand_pose")


@dataclass(frozen=True)
class AdapterConfig:
    heads: int = 4
    hand_guidance: bool = True  # hand features into the body query
    arm_guidance: bool = True  # the arm chain into the hand poses

    def to_json(self) -> dict:
        return asdict(self)


def hand_joint_names(joint_names: list[str]) -> list[str]:
    """The wrists and finger joints of both hands, as the body model names them."""
    return [name for name in joint_names
            if any(name.startswith(f"{side}_") and (name.endswith("_wrist") or any(
                finger in name for finger in FINGERS)) for side in SIDES)]


def arm_chain_joints(joint_names: list[str]) -> list[int]:
    """Positions in ``body_pose`` (joint index - 1: the root is ``global_orient``) of the
    joints from the spine to each wrist."""
    names = [link.format(side=side) for side in SIDES for link in ARM_CHAIN]
    names = list(dict.fromkeys(names))  # the spine once
    missing = [name for name in names if name not in joint_names]
    if missing:
        raise ValueError(f"the body model has no joints {missing}: arm guidance needs them")
    return [joint_names.index(name) - 1 for name in names]


def crop_grid(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) model-frame points seen by (B, 3) crop cameras -> (B, K, 2) positions in the
    crop as ``grid_sample`` reads them ([-1, 1] across its width and height)."""
    xy = to_camera(points, torch.zeros_like(camera))[..., :2]
    # The crop camera puts camera-frame x, y at 0.5 s (xy + t) crop heights from the crop's
    # centre (crop_camera.py), and the crop is 3/4 as wide as high.
    scale, shift = camera[:, None, :1], camera[:, None, 1:]
    return scale * (xy + shift) * xy.new_tensor([4.0 / 3.0, 1.0])


class AttentionAdapter(nn.Module):
    """Self-attention over [query; guidance], the query's output projected back, from zero."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, query: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        tokens = self.norm(query if guidance is None else torch.cat([query, guidance], 1))
        attended, _ = self.attention(tokens[:, :query.shape[1]], tokens, tokens,
                                     need_weights=False)
        return self.out(attended)


class AdapterModules(nn.Module):
    """Everything an adapter learns (the checkpoint holds this module alone)."""

    def __init__(self, base: PearRegressor, joint_names: list[str], config: AdapterConfig):
        super().__init__()
        dim = base.head.query.shape[-1]
        self.layers = nn.ModuleList(AttentionAdapter(dim, config.heads)
                                    for _ in base.head.layers)
        if config.hand_guidance:
            count = len(hand_joint_names(joint_names))
            self.hand_features = nn.Linear(base.backbone.config.dim, dim)
            self.hand_embedding = nn.Parameter(torch.randn(count, dim) * 0.02)
        if config.arm_guidance:
            hands = sum(slot.size for slot in base.layout.slots if slot.spec.name in HAND_POSES)
            self.arm_to_hands = nn.Linear(6 * len(arm_chain_joints(joint_names)), hands)
            nn.init.zeros_(self.arm_to_hands.weight)
            nn.init.zeros_(self.arm_to_hands.bias)


class AdaptedRegressor(nn.Module):
    """A frozen ``PearRegressor`` with adapters; the same input and output as the base."""

    def __init__(self, base: PearRegressor, body: LandmarkModel, joint_names: list[str],
                 config: AdapterConfig = AdapterConfig()):
        super().__init__()
        self.base, self.body, self.config = base, body, config
        base.requires_grad_(False)
        body.requires_grad_(False)
        self.adapter = AdapterModules(base, joint_names, config)
        self.hand_joints = [joint_names.index(n) for n in hand_joint_names(joint_names)]
        self.arm_joints = arm_chain_joints(joint_names) if config.arm_guidance else []
        slots = {slot.spec.name: slot for slot in base.layout.slots}
        self.hand_slots = [(slots[name].start, slots[name].size) for name in HAND_POSES]
        self.body_slot = (slots["body_pose"].start, slots["body_pose"].size)

    @property
    def layout(self):
        """The output's layout: the base's (an adapted network answers as its base does)."""
        return self.base.layout

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.base.backbone(images)
        with torch.no_grad():
            estimate = self.base.head(tokens)
        guidance = self._hand_tokens(tokens, estimate) if self.config.hand_guidance else None
        head = self.base.head
        context = head.context(tokens)
        output = head.mean.expand(tokens.shape[0], -1)
        for _ in range(head.iterations):
            query = head.query + head.feedback(output)[:, None]
            for layer, adapter in zip(head.layers, self.adapter.layers, strict=True):
                query = layer(query, context) + adapter(query, guidance)
            output = output + head.out(query[:, 0])
        if self.config.arm_guidance:
            output = output + self._arm_correction(estimate)
        return output

    def _hand_tokens(self, tokens: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        """Backbone features at the estimate's hand joints in the crop, one token each."""
        params, camera = self.base.layout.decode(estimate)
        _, joints = self.body(params)
        grid = crop_grid(joints[:, self.hand_joints], camera)
        rows, cols = self.base.backbone.config.grid
        features = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, rows, cols)
        sampled = F.grid_sample(features, grid[:, None], align_corners=False)[:, :, 0]
        return self.adapter.hand_features(sampled.transpose(1, 2)) + self.adapter.hand_embedding

    def _arm_correction(self, estimate: torch.Tensor) -> torch.Tensor:
        """The hand poses' 6D values moved by the arm chain's (zero at the start)."""
        start, size = self.body_slot
        body = estimate[:, start:start + size].unflatten(1, (-1, 6))
        values = self.adapter.arm_to_hands(body[:, self.arm_joints].flatten(1))
        correction = torch.zeros_like(estimate)
        done = 0
        for start, size in self.hand_slots:
            correction[:, start:start + size] = values[:, done:done + size]
            done += size
        return correction

"""The regressor's output vector, laid out from an asset's parameter spec: rotations as 6D
(continuous, learnable), everything else as is; the camera's 3 values last."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..body.params import ParamSpec
from ..body.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)

# Weak-perspective crop camera (scale, tx, ty); a person filling the crop has scale ~0.9.
CAMERA_MEAN = (0.9, 0.0, 0.0)
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Slot:
    spec: ParamSpec
    start: int
    size: int

    @property
    def rotation(self) -> bool:
        return self.spec.kind == "axis_angle"


class ParamLayout:
    """Where each parameter sits in the output vector. ``transl`` is left out: the camera
    places the body."""

    def __init__(self, spec: list[ParamSpec]):
        self.slots, start = [], 0
        for param in spec:
            if param.name == "transl" or param.size == 0:
                continue
            size = param.size * 2 if param.kind == "axis_angle" else param.size
            self.slots.append(Slot(param, start, size))
            start += size
        self.params_size = start
        self.size = start + len(CAMERA_MEAN)

    def mean(self) -> torch.Tensor:
        """The output at initialization: rest pose, mean shape, neutral face, mean camera."""
        values = []
        for slot in self.slots:
            if slot.rotation:
                values.append(torch.tensor(_IDENTITY_6D).repeat(slot.size // 6))
            else:
                values.append(torch.full((slot.size,), float(slot.spec.default)))
        return torch.cat([*values, torch.tensor(CAMERA_MEAN)])

    def decode(self, vector: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(B, size) -> body-model parameters (axis-angle rotations) and the (B, 3) camera."""
        _, params, camera = self.decode_with_matrices(vector)
        return params, camera

    def decode_with_matrices(self, vector: torch.Tensor) -> tuple[
            dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """``decode``, plus each rotation parameter as (B, J, 3, 3) matrices straight from its
        6D values (what training compares, without the axis-angle round trip)."""
        batch = vector.shape[0]
        matrices, params = {}, {}
        for slot in self.slots:
            values = vector[:, slot.start:slot.start + slot.size]
            if slot.rotation:
                matrices[slot.spec.name] = rotation_6d_to_matrix(values.reshape(batch, -1, 6))
                values = matrix_to_axis_angle(matrices[slot.spec.name])
            params[slot.spec.name] = values.reshape(batch, *slot.spec.shape)
        return matrices, params, vector[:, self.params_size:]

    def encode(self, params: dict[str, torch.Tensor], camera: torch.Tensor) -> torch.Tensor:
        """The output vector (B, size) that decodes to ``params`` (axis-angle; missing ones at
        the mean) and the crop ``camera`` (B, 3): ``decode``'s inverse."""
        batch = camera.shape[0]
        vector = self.mean().to(camera).repeat(batch, 1)
        for slot in self.slots:
            if slot.spec.name not in params:
                continue
            value = params[slot.spec.name]
            if slot.rotation:
                value = matrix_to_rotation_6d(axis_angle_to_matrix(value.reshape(batch, -1, 3)))
            vector[:, slot.start:slot.start + slot.size] = value.reshape(batch, -1)
        vector[:, self.params_size:] = camera
        return vector


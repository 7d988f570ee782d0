"""The parameter spec: names, shapes and meaning of a body model's parameters.

Names and sizes always come from an asset's spec; nothing downstream hard-codes them.
Rotations are axis-angle at this interface.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from .errors import ParameterError

Kind = Literal["axis_angle", "coeffs", "scale", "translation", "offsets"]
Per = Literal["frame", "subject"]


@dataclass(frozen=True)
class ParamSpec:
    """One named parameter of the body model.

    ``per`` says whether it changes every frame or is fixed for a subject (clip);
    ``range`` is the plausible interval of each entry (for validation and UI sliders).
    """

    name: str
    shape: tuple[int, ...]
    kind: Kind
    per: Per
    default: float = 0.0
    range: tuple[float, float] = (-math.inf, math.inf)
    description: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["range"] = [_finite_or_none(v) for v in self.range]
        return data

    @classmethod
    def from_json(cls, data: dict) -> ParamSpec:
        low, high = data.get("range", [None, None])
        return cls(
            name=data["name"],
            shape=tuple(int(s) for s in data["shape"]),
            kind=data["kind"],
            per=data["per"],
            default=float(data.get("default", 0.0)),
            range=(-math.inf if low is None else low, math.inf if high is None else high),
            description=data.get("description", ""),
        )


def subject_values(specs: Iterable[ParamSpec], values: Mapping[str, Any]
                   ) -> dict[str, np.ndarray]:
    """Values for per-subject parameters, each as float32 ``(1, *shape)``; a ParameterError
    names a parameter that is not per-subject or has the wrong number of values."""
    by_name = {spec.name: spec for spec in specs}
    subject_names = [name for name, spec in by_name.items() if spec.per == "subject"]
    out = {}
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None or spec.per != "subject":
            raise ParameterError(f"{name!r} is not a per-subject parameter of this body "
                                 f"model (those are {subject_names})")
        array = np.asarray(value, np.float32)
        if array.size != spec.size:
            raise ParameterError(f"subject parameter {name!r} has {array.size} values; this "
                                 f"body model's has shape {spec.shape}")
        out[name] = array.reshape(1, *spec.shape)
    return out


def _finite_or_none(value: float) -> float | None:
    return None if math.isinf(value) else value


# Per-frame parameters that carry facial actions: faster than limbs (a blink closes and opens
# in ~4 frames), so the tracker and the smoother hold them back less.
FACE_ACTION_PARAMS = ("expression", "jaw_pose", "eyelids")


def standard_spec(
    *,
    num_joints: int,
    num_betas: int,
    num_head_shape: int,
    num_expression: int,
    num_eyelids: int,
    head_scale: bool,
    body_joints: int = 21,
    hand_joints: int = 15,
) -> list[ParamSpec]:
    """The EHM parameter set, sized for one asset; parameters of size zero are left out."""
    rot = (-math.pi, math.pi)
    spec = [
        ParamSpec("global_orient", (1, 3), "axis_angle", "frame", range=rot,
                  description="root (pelvis) rotation"),
        ParamSpec("body_pose", (body_joints, 3), "axis_angle", "frame", range=rot),
        ParamSpec("left_hand_pose", (hand_joints, 3), "axis_angle", "frame", range=rot,
                  description="zero is the flat hand"),
        ParamSpec("right_hand_pose", (hand_joints, 3), "axis_angle", "frame", range=rot,
                  description="zero is the flat hand"),
        ParamSpec("jaw_pose", (1, 3), "axis_angle", "frame", range=rot),
        ParamSpec("eye_pose", (2, 3), "axis_angle", "frame", range=rot,
                  description="left eye, right eye"),
        ParamSpec("betas", (num_betas,), "coeffs", "subject", range=(-5.0, 5.0),
                  description="body shape"),
        ParamSpec("shape", (num_head_shape,), "coeffs", "subject", range=(-5.0, 5.0),
                  description="head shape"),
        ParamSpec("expression", (num_expression,), "coeffs", "frame", range=(-5.0, 5.0)),
        ParamSpec("eyelids", (num_eyelids,), "coeffs", "frame", range=(-0.5, 1.5),
                  description="left, right eyelid closure"),
        ParamSpec("head_scale", (3,), "scale", "subject", default=1.0, range=(0.5, 2.0),
                  description="per-axis head scale about the eye midpoint"),
        ParamSpec("joints_offset", (num_joints, 3), "offsets", "subject", range=(-0.2, 0.2),
                  description="per-subject joint offsets (metres), added before skinning"),
        ParamSpec("transl", (3,), "translation", "frame", description="root translation (m)"),
    ]
    return [p for p in spec if p.size and (head_scale or p.name != "head_scale")]


def spec_hash(spec: list[ParamSpec], joint_names: list[str]) -> str:
    """A short, stable fingerprint of a parameter spec and skeleton (checkpoints record it)."""
    payload = json.dumps(
        {"spec": [[p.name, list(p.shape), p.kind, p.per] for p in spec], "joints": joint_names},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

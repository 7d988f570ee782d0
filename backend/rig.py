"""What a scene builder needs to make a subject's rig: the shaped rest mesh and skeleton,
skin weights, and one linear shape key per expression component.

Everything is in the model's own frame (Y up, metres) and plain numpy, so the same map goes
into the Blender scene builder in-process (``backend bake``) or over the wire (the server's
``rig`` op). The rest pose is the subject's (betas, head shape, joint offsets, head scale), so
the rig is rebuilt per subject; expressions are exact shape keys because the model adds them
before skinning (pose correctives, where an asset has them, are not carried: Blender's
armature cannot express them without drivers).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .body.asset import Asset
from .body.model import BodyModel

RIG_FORMAT_VERSION = 1


def subject_params(asset: Asset, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-subject parameters (one row) out of a result's parameters."""
    return {p.name: np.asarray(params[p.name])[:1] for p in asset.param_spec
            if p.per == "subject" and p.name in params}


def expression_components(asset: Asset) -> tuple[str, list[str]]:
    """The parameter that drives shape keys, and a name per component (ARKit names for the
    open model, ``Exp000``... for FLAME)."""
    spec = {p.name: p for p in asset.param_spec}
    if "expression" not in spec:
        return "expression", []
    names = list(asset.meta.get("expression_names") or [])
    if len(names) != spec["expression"].size:
        names = [f"Exp{k:03d}" for k in range(spec["expression"].size)]
    return "expression", names


def build_rig(asset: Asset, subject: Mapping[str, np.ndarray] | None = None) -> dict:
    """The rig of ``asset`` shaped by ``subject`` (per-subject parameters; missing = mean)."""
    model = BodyModel(asset).double()
    expression, names = expression_components(asset)
    count = len(names)
    params = model.default_params(count + 1)
    for name, value in (subject or {}).items():
        if name not in model.spec or model.spec[name].per != "subject":
            raise ValueError(f"{name!r} is not a per-subject parameter of asset "
                             f"{asset.asset_id!r}")
        params[name] = torch.as_tensor(np.asarray(value, np.float64)).reshape(
            1, *model.spec[name].shape).expand_as(params[name])
    if count:  # row 0: neutral; row k + 1: component k at 1
        params[expression] = torch.cat([torch.zeros(1, count, dtype=torch.float64),
                                        torch.eye(count, dtype=torch.float64)])
    with torch.no_grad():
        out = model(params)
    vertices = out.vertices.numpy()
    weights = asset.arrays["lbs_weights"]
    vertex, joint = np.nonzero(weights)
    return {
        "format_version": RIG_FORMAT_VERSION,
        "asset_id": asset.asset_id,
        "spec_hash": asset.spec_hash,
        "joint_names": list(asset.joint_names),
        "parents": np.asarray(asset.arrays["parents"], np.int32),
        "pose_joints": {k: list(map(int, v)) for k, v in asset.meta["pose_joints"].items()},
        "rest_joints": out.rest_joints[0].numpy().astype(np.float32),
        "vertices": vertices[0].astype(np.float32),
        "faces": np.asarray(asset.arrays["faces"], np.int32),
        "weight_vertex": vertex.astype(np.int32),
        "weight_joint": joint.astype(np.int32),
        "weight_value": weights[vertex, joint].astype(np.float32),
        "expression_param": expression,
        "expression_names": names,
        "expression_deltas": (vertices[1:] - vertices[:1]).astype(np.float32),
    }

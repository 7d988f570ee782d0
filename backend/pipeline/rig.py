"""What a scene builder needs to make a subject's rig: the shaped rest mesh and skeleton,
skin weights, one linear shape key per expression component and per leading body-shape
component.

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

from ..body.asset import Asset
from ..body.model import BodyModel
from ..body.params import subject_values

RIG_FORMAT_VERSION = 1
# Body-shape components offered as (optional) shape keys: the first, largest ones. They move
# the mesh only; the skeleton stays the subject's.
BODY_SHAPE_PARAM = "betas"
BODY_SHAPE_KEYS = 10


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
    body_shape = model.spec.get(BODY_SHAPE_PARAM)
    shapes = (min(BODY_SHAPE_KEYS, body_shape.size)
              if body_shape is not None and body_shape.per == "subject" else 0)
    # Row 0: the subject; rows 1..count: expression component k at 1; then the subject with
    # body-shape component k one unit further.
    params = model.default_params(1 + count + shapes)
    for name, value in subject_values(asset.param_spec, subject or {}).items():
        params[name] = torch.as_tensor(value, dtype=torch.float64).expand_as(params[name]).clone()
    if count:
        params[expression] = torch.cat([torch.zeros(1, count, dtype=torch.float64),
                                        torch.eye(count, dtype=torch.float64),
                                        torch.zeros(shapes, count, dtype=torch.float64)])
    for k in range(shapes):
        params[BODY_SHAPE_PARAM][1 + count + k, k] += 1.0
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
        "expression_deltas": (vertices[1:1 + count] - vertices[:1]).astype(np.float32),
        "body_shape_param": BODY_SHAPE_PARAM if shapes else "",
        "body_shape_names": [f"Shape{k:02d}" for k in range(shapes)],
        "body_shape_deltas": (vertices[1 + count:] - vertices[:1]).astype(np.float32),
    }

"""What ``backend fit`` does to a fitted clip after the tracker: elbow-twist compensation, then
the offline smoother over every per-frame parameter and the camera (strength 0 = off)."""

from __future__ import annotations

import numpy as np

from ..body.params import FACE_ACTION_PARAMS, ParamSpec
from .filters import rts_smooth, smooth_rotations
from .twist import compensate_elbow_twist

# The smoother's strength on facial actions, a share of the body's: at 0.3 a blink keeps 95%
# of its closure (at the body's strength, 80%).
FACE_STRENGTH = 0.3


def postprocess(params: dict[str, np.ndarray], cam_t: np.ndarray, spec: dict[str, ParamSpec],
                rest_joints: np.ndarray, joint_names: list[str], strength: float
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out = dict(params)
    out["body_pose"] = compensate_elbow_twist(params["body_pose"], rest_joints, joint_names)
    for name, entry in spec.items():
        if entry.per != "frame" or name not in out or name == "transl":
            continue
        value = out[name]
        if entry.kind == "axis_angle":
            out[name] = smooth_rotations(value, strength).astype(value.dtype)
        else:
            share = FACE_STRENGTH if name in FACE_ACTION_PARAMS else 1.0
            out[name] = rts_smooth(value, share * strength).astype(value.dtype)
    return out, rts_smooth(cam_t, strength).astype(cam_t.dtype)

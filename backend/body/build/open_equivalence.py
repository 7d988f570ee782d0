"""Check the open asset against anny's own forward: same shapes, faces and poses, same mesh.

The anny side is posed through anny's public pose interface: each driven bone gets the joint's
rotation as a world-aligned delta about its own head, every merged bone stays still relative to
its parent, the root also takes the translation. Joints pivoting on several bones (the feet) and
the jaw (no bone) are left at rest, since anny turns each of those bones about its own head.
"""

from __future__ import annotations

import numpy as np
import torch

from ..joint_names import SMPLX_JOINT_NAMES
from ..model import BodyModel
from ..rotations import axis_angle_to_matrix
from .anny_source import ANNY_TO_OURS
from .open_asset import OpenBuild
from .open_skeleton import DRIVEN_BONES, PIVOT_BONES

# Joints the check may rotate: driven by exactly one anny bone, pivoting on its head.
CHECKED_JOINTS = [SMPLX_JOINT_NAMES.index(j) for j, bones in DRIVEN_BONES.items()
                  if len(bones) == 1 and j not in PIVOT_BONES]


def random_open_params(model: BodyModel, count: int, generator: torch.Generator
                       ) -> dict[str, torch.Tensor]:
    """Shapes inside the basis, facial actions in [0, 1], poses on the checked joints only."""
    def normal(*shape: int, scale: float) -> torch.Tensor:
        return scale * torch.randn(count, *shape, generator=generator, dtype=torch.float64)

    params = model.default_params(count)
    params["betas"] = normal(len(params["betas"][0]), scale=1.0).clamp(-2.5, 2.5)
    params["expression"] = torch.rand(params["expression"].shape, generator=generator,
                                      dtype=torch.float64)
    params["transl"] = normal(3, scale=0.5)
    for name, joints in model.pose_joints.items():
        mask = torch.tensor([j in CHECKED_JOINTS for j in joints], dtype=torch.float64)
        params[name] = normal(len(joints), 3, scale=0.5 if name == "global_orient" else 0.35)
        params[name] = params[name] * mask[None, :, None]
    return params


def compare_with_anny(build: OpenBuild, count: int = 8, seed: int = 0) -> dict[str, float]:
    """Vertex error (mm) of our forward against anny's on random shapes, expressions, poses."""
    model = BodyModel(build.asset).double()
    generator = torch.Generator().manual_seed(seed)
    params = random_open_params(model, count, generator)
    with torch.no_grad():
        ours = model(params).vertices.numpy()
        theirs = _anny_vertices(build, params)
    error = np.linalg.norm(ours - theirs, axis=2)
    return {"equiv_mean_mm": float(1000 * error.mean()), "equiv_max_mm": float(1000 * error.max())}


def _anny_vertices(build: OpenBuild, params: dict[str, torch.Tensor]) -> np.ndarray:
    from anny.models.rigged_model import RiggedModelWithLinearBlendShapes

    source, anny_model = build.source, build.source.model
    count = params["betas"].shape[0]
    coeffs = np.concatenate([build.basis.coefficients(params["betas"].numpy()),
                             params["expression"].numpy()], axis=1)
    coeffs = torch.as_tensor(coeffs)
    to_anny = torch.as_tensor(ANNY_TO_OURS.T)  # ours -> anny (the inverse rotation)

    deltas = torch.eye(4, dtype=torch.float64).repeat(count, len(source.bone_labels), 1, 1)
    axis_angle = torch.zeros(count, len(SMPLX_JOINT_NAMES), 3, dtype=torch.float64)
    for name, joints in build.asset.meta["pose_joints"].items():
        axis_angle[:, joints] = params[name].reshape(count, len(joints), 3)
    rotations = to_anny @ axis_angle_to_matrix(axis_angle) @ to_anny.T
    for joint in CHECKED_JOINTS:
        bone = source.bone_labels.index(DRIVEN_BONES[SMPLX_JOINT_NAMES[joint]][0])
        deltas[:, bone, :3, :3] = rotations[:, joint]

    saved = anny_model.reference_bone_orientations
    anny_model.reference_bone_orientations = None  # deltas relative to the rest pose itself
    try:
        rest = anny_model.get_rest_model(coeffs)
        # The root's delta is its world pose: rotate about its head, then translate.
        deltas[:, 0, :3, 3] = rest["rest_bone_heads"][:, 0] + params["transl"] @ to_anny.T
        output = RiggedModelWithLinearBlendShapes.forward(
            anny_model, deltas, coeffs, pose_parameterization="local-ref")
    finally:
        anny_model.reference_bone_orientations = saved
    return output["vertices"].numpy() @ ANNY_TO_OURS.T

"""The body model restricted to what keypoint fitting needs: joints and landmark sets.

For assets whose rest shape is linear in its coefficients (no swapped-in head), joints come from
a precomputed joint basis and only the vertices the landmark sets touch are shaped and skinned,
a few thousand instead of the whole mesh. Results equal ``BodyModel``'s (tested). Head-model
assets (smplx+flame) fall back to the full forward.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .lbs import pose_feature
from .model import BodyModel


class LandmarkModel(torch.nn.Module):
    def __init__(self, model: BodyModel, sets: list[str] | None = None):
        """``sets``: the landmark sets to compute (default all); fewer sets, fewer vertices."""
        super().__init__()
        self.body = model
        self.sparse = not model.has_head_model
        self._names = list(model._landmark_names if sets is None else sets)
        unknown = sorted(set(self._names) - set(model._landmark_names))
        if unknown:
            raise KeyError(f"asset {model.asset_id!r} has no landmark set(s) {unknown}")
        if not self.sparse:
            return
        regressors = {name: getattr(model, f"_lmk_regressor_{name}").coalesce()
                      for name in self._names}
        used = np.unique(np.concatenate([r.indices()[1].cpu().numpy()
                                         for r in regressors.values()] + [np.zeros(1, int)]))
        ids = torch.as_tensor(used)
        self.register_buffer("vertex_ids", ids)
        flat = torch.stack([3 * ids, 3 * ids + 1, 3 * ids + 2], 1).reshape(-1)
        self.register_buffer("template", model.v_template[ids])
        self.register_buffer("shapedirs", model.shapedirs[:, flat])
        self.register_buffer("exprdirs", None if model.exprdirs is None
                             else model.exprdirs[:, flat])
        self.register_buffer("posedirs", None if model.posedirs is None
                             else model.posedirs[:, flat])
        self.register_buffer("weights", model.lbs_weights[ids])
        # Joints = J_regressor (template + shape + expression): precompute each part's joints.
        regressor = model.J_regressor
        template = model.v_template
        self.register_buffer("joint_template", regressor @ template)
        self.register_buffer("joint_shapedirs", _regress_basis(regressor, model.shapedirs))
        self.register_buffer("joint_exprdirs", None if model.exprdirs is None
                             else _regress_basis(regressor, model.exprdirs))
        position = torch.full((template.shape[0],), -1, dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        for name, r in regressors.items():
            rows, cols = r.indices()
            self.register_buffer(f"_regressor_{name}", torch.sparse_coo_tensor(
                torch.stack([rows, position[cols]]), r.values(), (r.shape[0], len(ids)),
                check_invariants=True).coalesce())

    def forward(self, params: Mapping[str, torch.Tensor]
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Landmark sets (name -> (B, K, 3)) and posed joints (B, J, 3) of ``params``."""
        if not self.sparse:
            output = self.body(params)
            return {name: output.landmarks[name] for name in self._names}, output.joints
        body = self.body
        p = body._prepare(dict(params))
        batch = p["global_orient"].shape[0]
        v = torch.addmm(self.template.view(1, -1), p["betas"], self.shapedirs)
        joints = torch.addmm(self.joint_template.view(1, -1), p["betas"], self.joint_shapedirs)
        if self.exprdirs is not None:
            v = torch.addmm(v, p["expression"], self.exprdirs)
            joints = torch.addmm(joints, p["expression"], self.joint_exprdirs)
        joints = joints.view(batch, -1, 3) + p["joints_offset"]
        rotations = body._rotations(p, body.pose_joints, len(body.chain))
        if self.posedirs is not None:
            v = torch.addmm(v, pose_feature(rotations), self.posedirs)
        vertices, posed_joints, _ = body._skin(v.view(batch, -1, 3), self.weights, joints,
                                               rotations, p["transl"])
        landmarks = {name: body.landmark_points(name, getattr(self, f"_regressor_{name}"),
                                                vertices, posed_joints)
                     for name in self._names}
        return landmarks, posed_joints


def _regress_basis(regressor: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(K, V*3) vertex blend shapes -> (K, J*3) joint blend shapes."""
    count = basis.shape[0]
    per_vertex = basis.view(count, -1, 3).permute(1, 0, 2).reshape(regressor.shape[1], -1)
    return (regressor @ per_vertex).view(regressor.shape[0], count, 3).permute(1, 0, 2).reshape(
        count, -1)

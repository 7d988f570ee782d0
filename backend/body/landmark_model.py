"""The body model restricted to what keypoint fitting needs: joints and landmark sets.

For assets whose rest shape is linear in its coefficients (no swapped-in head), nothing of the
mesh is shaped or skinned per call. A landmark on the mesh is a fixed blend of vertices
(``L = sum_v r_v p_v``) and a skinned vertex a fixed blend of joint transforms
(``p_v = sum_j w_vj T_j [x_v; 1]``), so ``L = sum_j T_j [y_j; s_j]`` with
``y_j = sum_v r_v w_vj x_v`` and ``s_j = sum_v r_v w_vj``. ``y`` is linear in the blend-shape
coefficients like ``x``: its template and bases are precomputed for the (landmark, joint) pairs
with a non-zero weight, about 60 for the 33 pose points instead of the ~1,300 vertices they
touch. Joints come from a precomputed joint basis. Results equal ``BodyModel``'s (tested).
Head-model assets (smplx+flame) fall back to the full forward.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .lbs import pose_feature
from .model import BodyModel


class LandmarkModel(torch.nn.Module):
    def __init__(self, model: BodyModel, sets: list[str] | None = None):
        """``sets``: the landmark sets to compute (default all); fewer sets, fewer pairs."""
        super().__init__()
        self.body = model
        self.sparse = not model.has_head_model
        self._names = list(model.landmark_names if sets is None else sets)
        unknown = sorted(set(self._names) - set(model.landmark_names))
        if unknown:
            raise KeyError(f"asset {model.asset_id!r} has no landmark set(s) {unknown}")
        if not self.sparse:
            return
        dtype = model.v_template.dtype
        regressors = {name: model.landmark_regressor(name).coalesce().cpu()
                      for name in self._names}
        # Landmarks placed on a joint take its posed place, the others blend vertices.
        landmark_joint = torch.cat([torch.zeros(0, dtype=torch.long)]
                                   + [model.landmark_joints(name).cpu() for name in self._names])
        self._sizes = [r.shape[0] for r in regressors.values()]
        self._count = len(landmark_joint)
        self.register_buffer("attached_landmark", torch.nonzero(landmark_joint >= 0)[:, 0])
        self.register_buffer("attached_joint", landmark_joint[self.attached_landmark])
        # (landmark, joint) pairs: A[pair, v] = r[landmark, v] * w[v, joint]. (No sets, no
        # pairs: the joints alone, e.g. for training on keypoints of the skeleton.)
        weights = model.lbs_weights.detach().cpu().double().numpy()
        landmark_rows, joint_rows, columns, values = [np.zeros(0, int)], [np.zeros(0, int)], [
            np.zeros(0, int)], [np.zeros(0)]
        first = 0
        for r in regressors.values():
            rows, cols = r.indices().numpy()
            on_mesh = landmark_joint.numpy()[first + rows] < 0
            w = weights[cols]  # (nnz, J)
            entry, joint = np.nonzero(w * on_mesh[:, None])
            landmark_rows.append(first + rows[entry])
            joint_rows.append(joint)
            columns.append(cols[entry])
            values.append(r.values().double().numpy()[entry] * w[entry, joint])
            first += r.shape[0]
        landmark_rows, joint_rows = np.concatenate(landmark_rows), np.concatenate(joint_rows)
        keys, pair = np.unique(landmark_rows * len(model.joint_names) + joint_rows,
                               return_inverse=True)
        pairs = torch.sparse_coo_tensor(
            np.stack([pair.reshape(-1), np.concatenate(columns)]), np.concatenate(values),
            (len(keys), weights.shape[0]), check_invariants=True).coalesce()
        self.register_buffer("pair_landmark", torch.as_tensor(keys // len(model.joint_names)))
        self.register_buffer("pair_joint", torch.as_tensor(keys % len(model.joint_names)))
        self.register_buffer("pair_weight", torch.sparse.sum(pairs, 1).to_dense().to(dtype))
        # Pair points are laid out coordinate-major, (3 * P, B): x of every pair, then y, z.
        self.register_buffer("pair_template", (pairs @ model.v_template.detach().cpu().double()
                                               ).T.reshape(-1, 1).to(dtype))
        self.register_buffer("pair_shapedirs", _basis(pairs, model.shapedirs, dtype))
        self.register_buffer("pair_exprdirs", _basis(pairs, model.exprdirs, dtype))
        self.register_buffer("pair_posedirs", _basis(pairs, model.posedirs, dtype))
        # Joints = J_regressor (template + shape + expression): precompute each part's joints.
        regressor = model.J_regressor
        self.register_buffer("joint_template", regressor @ model.v_template)
        self.register_buffer("joint_shapedirs", _regress_basis(regressor, model.shapedirs))
        self.register_buffer("joint_exprdirs", None if model.exprdirs is None
                             else _regress_basis(regressor, model.exprdirs))
        # Every per-joint quantity is kept in level order (the root, its children, theirs, ...):
        # each level of the kinematic chain is then a slice, and a joint of depth d has its
        # parent in level d - 1.
        chain = model.chain
        order = [j for level in chain.levels for j in level]
        position = np.argsort(order)  # joint -> place in level order
        self._level_sizes = [len(level) for level in chain.levels]
        self.register_buffer("level_order", torch.as_tensor(order))
        self.register_buffer("level_unpermute", torch.as_tensor(position))
        self.register_buffer("level_parents", torch.as_tensor(
            [position[chain.parents[j]] for j in order[1:]]))
        for depth in range(1, len(chain.levels)):
            above = chain.levels[depth - 1]
            self.register_buffer(f"_parent_in_level_{depth}", torch.as_tensor(
                [above.index(chain.parents[j]) for j in chain.levels[depth]]))
        self.pair_joint = torch.as_tensor(position)[self.pair_joint]
        self.attached_joint = torch.as_tensor(position)[self.attached_joint]
        # Axis-angle of every joint: a row of the concatenated pose parameters, or zero (row 0).
        self._pose_names = list(model.pose_joints)
        rows = np.zeros(len(chain), int)
        start = 1
        for name in self._pose_names:
            joints = model.pose_joints[name]
            rows[joints] = start + np.arange(len(joints))
            start += len(joints)
        self.register_buffer("pose_rows", torch.as_tensor(rows[order]))
        self.to(model.v_template.device)

    def forward(self, params: Mapping[str, torch.Tensor]
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Landmark sets (name -> (B, K, 3)) and posed joints (B, J, 3) of ``params``."""
        if not self.sparse:
            output = self.body(params)
            return {name: output.landmarks[name] for name in self._names}, output.joints
        p = self.body.prepare_params(dict(params))
        batch = p["global_orient"].shape[0]
        betas = _unexpanded(p["betas"])  # per subject: one product, broadcast over frames
        joints = torch.addmm(self.joint_template.view(1, -1), betas, self.joint_shapedirs)
        # Pair points (3 * P, B): each pair's coordinates are contiguous rows over the batch, so
        # applying the transforms below is a few elementwise passes.
        y = torch.addmm(self.pair_template, self.pair_shapedirs, betas.T)
        if self.pair_exprdirs is not None:
            expression = _unexpanded(p["expression"])
            y = torch.addmm(y, self.pair_exprdirs, expression.T)
            joints = torch.addmm(joints, expression, self.joint_exprdirs)
        joints = joints.view(-1, len(self.level_order), 3) + _unexpanded(p["joints_offset"])
        joints = joints[:, self.level_order]
        axis_angle = torch.cat([p["global_orient"].new_zeros(batch, 1, 3)]
                               + [p[name] for name in self._pose_names], dim=1)
        rotations = _axis_angle_to_matrix(axis_angle[:, self.pose_rows])
        if self.pair_posedirs is not None:
            joint_order = rotations[:, self.level_unpermute]
            y = torch.addmm(y, self.pair_posedirs, pose_feature(joint_order).T)
        posed, rotation, shift = self._world(rotations, joints, p["transl"])
        # Each pair: its joint's skinning transform applied to [y; s], elementwise on (P, 3, B)
        # rows; a landmark: the sum of its pairs, or its joint's place.
        pairs = self.pair_joint
        columns = rotation.permute(1, 3, 2, 0).unbind(1)  # each (J, 3, B)
        moved = shift.permute(1, 2, 0).index_select(0, pairs) * self.pair_weight[:, None, None]
        coordinates = y.view(3, len(pairs), 1, y.shape[1]).unbind(0)  # each (P, 1, B or 1)
        for column, coordinate in zip(columns, coordinates, strict=True):
            moved = torch.addcmul(moved, column.index_select(0, pairs), coordinate)
        points = moved.new_zeros(self._count, 3, batch).index_add(0, self.pair_landmark, moved)
        if len(self.attached_joint):
            points = points.index_add(0, self.attached_landmark, posed.permute(1, 2, 0)
                                      .index_select(0, self.attached_joint))
        points = points.permute(2, 0, 1)
        return (dict(zip(self._names, points.split(self._sizes, dim=1), strict=True)),
                posed[:, self.level_unpermute])

    def _world(self, rotations: torch.Tensor, joints: torch.Tensor, transl: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posed joints (B, J, 3) and the skinning transforms' rotations (B, J, 3, 3) and
        shifts (B, J, 3), translation included, all in level order: ``BodyModel._skin``'s,
        one product per level of the chain."""
        offsets = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, self.level_parents]], 1)
        local_r = rotations.split(self._level_sizes, dim=1)
        local_t = offsets.split(self._level_sizes, dim=1)
        world_r, world_t = [local_r[0]], [local_t[0] + transl[:, None]]
        for depth in range(1, len(local_r)):
            parent = getattr(self, f"_parent_in_level_{depth}")
            parent_r, parent_t = world_r[-1][:, parent], world_t[-1][:, parent]
            world_r.append(parent_r @ local_r[depth])
            world_t.append((parent_r @ local_t[depth][..., None])[..., 0] + parent_t)
        world_r = torch.cat(world_r, dim=1)
        posed = torch.cat(world_t, dim=1)
        # Skinning transform: x -> R x + (t - R j_rest).
        return posed, world_r, posed - (world_r * joints[:, :, None]).sum(-1)


def _axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """``rotations.axis_angle_to_matrix`` (Rodrigues, same small-angle series) entry by entry:
    R = I + sinc [a]x + cosc [a]x^2 with [a]x^2 = a a^T - |a|^2 I, no batched 3x3 products."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = angle_sq < 1e-8
    safe_angle = torch.where(small, torch.ones_like(angle_sq), torch.sqrt(angle_sq + 1e-16))
    sinc = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(safe_angle) / safe_angle)
    cosc = torch.where(
        small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(safe_angle)) / (safe_angle * safe_angle)
    )
    x, y, z = axis_angle.unbind(-1)
    sx, sy, sz = (sinc * axis_angle).unbind(-1)
    cx, cy, cz = (cosc * axis_angle).unbind(-1)
    cxy, cxz, cyz = cx * y, cx * z, cy * z
    return torch.stack([1 - cy * y - cz * z, cxy - sz, cxz + sy,
                        cxy + sz, 1 - cx * x - cz * z, cyz - sx,
                        cxz - sy, cyz + sx, 1 - cx * x - cy * y], dim=-1).unflatten(-1, (3, 3))


def _unexpanded(value: torch.Tensor) -> torch.Tensor:
    """A parameter broadcast over the batch (stride 0) as its single row."""
    return value[:1] if value.shape[0] > 1 and value.stride(0) == 0 else value


def _basis(pairs: torch.Tensor, basis: torch.Tensor | None, dtype: torch.dtype
           ) -> torch.Tensor | None:
    """(K, V*3) vertex blend shapes -> (3*P, K) pair blend shapes, coordinate-major (float64
    products)."""
    if basis is None:
        return None
    per_pair = _regress_basis(pairs, basis.detach().cpu().double())  # (K, P * 3)
    return per_pair.view(len(basis), -1, 3).permute(2, 1, 0).reshape(-1, len(basis)).to(dtype)


def _regress_basis(regressor: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(K, V*3) vertex blend shapes -> (K, J*3) joint blend shapes."""
    count = basis.shape[0]
    per_vertex = basis.view(count, -1, 3).permute(1, 0, 2).reshape(regressor.shape[1], -1)
    return (regressor @ per_vertex).view(regressor.shape[0], count, 3).permute(1, 0, 2).reshape(
        count, -1)

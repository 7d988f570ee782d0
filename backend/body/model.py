"""The Expressive Human Model forward: parameters -> posed vertices, 55 joints and landmarks.

One torch module serves every asset kind:

* ``smplx`` / ``open``: a linear shape (betas) and expression basis on the whole mesh, then LBS;
  jaw and eye poses rotate the skeleton's jaw and eye joints.
* ``smplx+flame`` (GUAVA's EHM): the head is a separate FLAME-style model posed by the jaw, eye
  and eyelid parameters with its own global/neck pose held at zero, scaled per axis about its eye
  midpoint, moved so that midpoint sits on the body's eye-joint midpoint, and written into the
  body template at the correspondence ids. The body's own jaw/eye joints stay at rest, so the head
  follows the body's neck and head joints through LBS.

Per-subject joint offsets (``joints_offset``, ΔJ) are added to the regressed joints before
skinning, so they move the skeleton LBS uses. Coordinates are the model's canonical frame.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .asset import Asset
from .errors import ParameterError
from .lbs import KinematicChain, pose_feature, regress_joints, skin_vertices
from .params import ParamSpec
from .rotations import axis_angle_to_matrix


@dataclass
class BodyOutput:
    vertices: torch.Tensor  # (B, V, 3) posed
    joints: torch.Tensor  # (B, J, 3) posed
    rest_joints: torch.Tensor  # (B, J, 3) of the shaped rest pose, ΔJ included
    joint_transforms: torch.Tensor  # (B, J, 3, 4) rigid map of each joint's rest to posed space
    landmarks: dict[str, torch.Tensor]  # name -> (B, K, 3)


def _flat_basis(dirs) -> torch.Tensor:
    """(N, 3, K) blend-shape directions as a (K, N*3) matrix, ready for one matmul."""
    dirs = torch.as_tensor(dirs)
    return dirs.permute(2, 0, 1).reshape(dirs.shape[2], -1).contiguous()


class BodyModel(torch.nn.Module):
    """Batched, differentiable forward of an EHM asset (CPU or CUDA, float32 or float64)."""

    def __init__(self, asset: Asset):
        super().__init__()
        arrays, meta = asset.arrays, asset.meta
        self.asset_id = asset.asset_id
        self.joint_names = asset.joint_names
        self.spec: dict[str, ParamSpec] = {p.name: p for p in asset.param_spec}
        self.pose_joints: dict[str, list[int]] = meta["pose_joints"]
        # The expression coefficients' names where they are named actions (the open asset's
        # ARKit blend shapes); empty for unnamed ones (SMPL-X's and FLAME's PCA).
        self.expression_names: list[str] = list(meta.get("expression_names") or [])
        self.chain = KinematicChain([int(p) for p in arrays["parents"]])
        num_vertices = arrays["v_template"].shape[0]

        self.register_buffer("v_template", torch.as_tensor(arrays["v_template"]))
        self.register_buffer("faces", torch.as_tensor(arrays["faces"]).long())
        self.register_buffer("shapedirs", _flat_basis(arrays["shapedirs"]))
        self.register_buffer("J_regressor", torch.as_tensor(arrays["J_regressor"]))
        self.register_buffer("lbs_weights", torch.as_tensor(arrays["lbs_weights"]))
        self.register_buffer("head_vertex_ids", torch.as_tensor(arrays["head_vertex_ids"]).long())
        for name in ("exprdirs", "posedirs"):
            self.register_buffer(name, _flat_basis(arrays[name]) if name in arrays else None)

        self.has_head_model = asset.has_head_model
        if self.has_head_model:
            head = meta["head_model"]
            self.head_chain = KinematicChain([int(p) for p in arrays["head_parents"]])
            self.head_pose_joints: dict[str, list[int]] = head["pose_joints"]
            self.head_eye_joints = list(head["eye_joints"])
            self.body_eye_joints = list(head["body_eye_joints"])
            self.register_buffer("head_v_template", torch.as_tensor(arrays["head_v_template"]))
            basis = [arrays["head_shapedirs"], arrays["head_exprdirs"]]
            self.register_buffer("head_basis", torch.cat([_flat_basis(b) for b in basis]))
            self.register_buffer("head_posedirs", _flat_basis(arrays["head_posedirs"]))
            self.register_buffer("head_J_regressor", torch.as_tensor(arrays["head_J_regressor"]))
            self.register_buffer("head_lbs_weights", torch.as_tensor(arrays["head_lbs_weights"]))
            eyelids = arrays.get("head_eyelid_dirs")
            self.register_buffer("eyelid_dirs", None if eyelids is None else
                                 torch.as_tensor(eyelids).reshape(eyelids.shape[0], -1))

        # Each landmark set as a sparse (K, V) vertex regressor: one sparse product per set,
        # however many vertices a point blends (anny's ear regressor blends thousands).
        self.landmark_names = list(asset.landmarks)
        for name, points in asset.landmarks.items():
            rows = np.repeat(np.arange(len(points)), points.vertices.shape[1])
            keep = (points.weights.reshape(-1) != 0) & np.repeat(points.joint < 0,
                                                                  points.vertices.shape[1])
            regressor = torch.sparse_coo_tensor(
                np.stack([rows[keep], points.vertices.reshape(-1)[keep]]),
                points.weights.reshape(-1)[keep], (len(points), num_vertices),
                check_invariants=True).coalesce()
            self.register_buffer(f"_lmk_regressor_{name}", regressor)
            self.register_buffer(f"_lmk_joint_{name}", torch.as_tensor(points.joint).long())

    # -- parameters ---------------------------------------------------------------------------

    def default_params(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Every parameter at its default (zero pose, mean shape, unit head scale)."""
        dtype, device = self.v_template.dtype, self.v_template.device
        return {
            name: torch.full((batch_size, *spec.shape), spec.default, dtype=dtype, device=device)
            for name, spec in self.spec.items()
        }

    def converted(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None
                  ) -> BodyModel:
        """This model in ``dtype`` on ``device``: itself when it already is, else a converted
        copy (``Module.to`` would change the caller's model in place)."""
        buffer = self.v_template
        if ((dtype is None or buffer.dtype == dtype)
                and (device is None or buffer.device == torch.device(device))):
            return self
        return copy.deepcopy(self).to(dtype=dtype, device=device)

    def prepare_params(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every parameter of the spec at the batch size and dtype of the model: the given ones
        checked (names, shapes, one batch size) and reshaped, the others at their defaults."""
        unknown = set(params) - set(self.spec)
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {sorted(unknown)}; asset {self.asset_id!r} takes "
                f"{sorted(self.spec)}"
            )
        batch_sizes = {name: value.shape[0] for name, value in params.items() if value.ndim}
        sizes = set(batch_sizes.values()) - {1}
        if len(sizes) > 1:
            raise ParameterError(f"parameters disagree on the batch size: {batch_sizes}")
        batch = sizes.pop() if sizes else 1
        prepared = self.default_params(batch)
        for name, value in params.items():
            spec = prepared[name]
            value = value.to(dtype=spec.dtype, device=spec.device)
            if value.ndim == 0 or value[0].numel() != self.spec[name].size:
                raise ParameterError(
                    f"{name}: expected shape (B, {', '.join(map(str, self.spec[name].shape))}) "
                    f"or (B, {self.spec[name].size}), got {tuple(value.shape)}"
                )
            prepared[name] = value.reshape(value.shape[0], *self.spec[name].shape).expand_as(spec)
        return prepared

    def _rotations(self, params: dict[str, torch.Tensor], layout: dict[str, list[int]],
                   num_joints: int) -> torch.Tensor:
        """Per-joint local rotation matrices; joints no parameter drives stay at rest."""
        reference = params["global_orient"]
        axis_angle = reference.new_zeros(reference.shape[0], num_joints, 3)
        for name, joints in layout.items():
            if name in params:
                axis_angle[:, joints] = params[name]
        return axis_angle_to_matrix(axis_angle)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, params: Mapping[str, torch.Tensor] | None = None,
                **kwargs: torch.Tensor) -> BodyOutput:
        """Pose the body. Parameters go by name (axis-angle rotations); missing ones default."""
        p = self.prepare_params({**(params or {}), **kwargs})
        batch = p["global_orient"].shape[0]
        # addmm fuses each blend-shape product with its sum: the mesh is large, passes cost.
        v = torch.addmm(self.v_template.view(1, -1), p["betas"], self.shapedirs)
        if self.exprdirs is not None:
            v = torch.addmm(v, p["expression"], self.exprdirs)
        v = v.view(batch, -1, 3)
        offsets = p["joints_offset"]
        joints = regress_joints(self.J_regressor, v) + offsets
        if self.has_head_model:
            v = self._swap_in_head(v, joints, p)
            joints = regress_joints(self.J_regressor, v) + offsets

        rotations = self._rotations(p, self.pose_joints, len(self.chain))
        if self.posedirs is not None:
            v = torch.addmm(v.reshape(batch, -1), pose_feature(rotations), self.posedirs)
            v = v.view(batch, -1, 3)
        vertices, posed_joints, skinning = self._skin(v, self.lbs_weights, joints, rotations,
                                                      p["transl"])
        return BodyOutput(vertices, posed_joints, joints, skinning,
                          self._landmarks(vertices, posed_joints))

    def _skin(self, v: torch.Tensor, weights: torch.Tensor, joints: torch.Tensor,
              rotations: torch.Tensor, transl: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Skinned vertices, posed joints and the joint transforms, translation included."""
        posed_joints, skinning = self.chain.world_transforms(rotations, joints)
        shift = transl[:, None]
        skinning = torch.cat([skinning[..., :3], skinning[..., 3:] + shift[..., None]], dim=-1)
        return skin_vertices(v, weights, skinning), posed_joints + shift, skinning

    def _swap_in_head(self, v: torch.Tensor, body_joints: torch.Tensor,
                      p: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = v.shape[0]
        coeffs = torch.cat([p["shape"], p["expression"]], dim=1)
        head = torch.addmm(self.head_v_template.view(1, -1), coeffs, self.head_basis)
        head = head.view(batch, -1, 3)
        head_joints = regress_joints(self.head_J_regressor, head)
        rotations = self._rotations(p, self.head_pose_joints, len(self.head_chain))
        head = torch.addmm(head.reshape(batch, -1), pose_feature(rotations), self.head_posedirs)
        head = head.view(batch, -1, 3)
        _, skinning = self.head_chain.world_transforms(rotations, head_joints)
        head = skin_vertices(head, self.head_lbs_weights, skinning)
        if self.eyelid_dirs is not None:
            head = head + (p["eyelids"] @ self.eyelid_dirs).view(batch, -1, 3)
        # The eye joints hang off the (zero-posed) neck, so their rest and posed places agree.
        head_eyes = head_joints[:, self.head_eye_joints].mean(1, keepdim=True)
        body_eyes = body_joints[:, self.body_eye_joints].mean(1, keepdim=True)
        head = (head - head_eyes) * p["head_scale"][:, None] + body_eyes
        return v.index_copy(1, self.head_vertex_ids, head)

    def _landmarks(self, vertices: torch.Tensor, joints: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.landmark_points(name, self.landmark_regressor(name), vertices, joints)
                for name in self.landmark_names}

    def landmark_regressor(self, name: str) -> torch.Tensor:
        """Landmark set ``name`` as a sparse (K, V) blend of mesh vertices (rows of points
        placed on a joint are empty)."""
        return getattr(self, f"_lmk_regressor_{name}")

    def landmark_joints(self, name: str) -> torch.Tensor:
        """(K,) the joint each point of set ``name`` sits on, or -1 for points on the mesh."""
        return getattr(self, f"_lmk_joint_{name}")

    def landmark_points(self, name: str, regressor: torch.Tensor, vertices: torch.Tensor,
                        joints: torch.Tensor) -> torch.Tensor:
        """Landmark set ``name`` (B, K, 3): its joints, else ``regressor`` applied to
        ``vertices`` (the full mesh, or the subset a regressor was restricted to)."""
        joint = self.landmark_joints(name)
        on_mesh = regress_joints(regressor, vertices)
        return torch.where((joint >= 0)[None, :, None], joints[:, joint.clamp_min(0)], on_mesh)

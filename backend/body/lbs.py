"""Linear blend skinning: the kinematic chain and the vertex skinning step (torch, batched)."""

from __future__ import annotations

import torch


class KinematicChain:
    """Composes per-joint local rotations into world transforms, one tree level at a time.

    Walking the tree level by level needs as many batched matmuls as the tree is deep (11 for
    SMPL-X) instead of one per joint (55), which matters at batch size 1.
    """

    def __init__(self, parents: list[int]):
        if not parents or parents[0] != -1:
            raise ValueError("the first joint must be the root (parent -1)")
        depth = [0] * len(parents)
        for joint, parent in enumerate(parents):
            if joint > 0 and not 0 <= parent < joint:
                raise ValueError(
                    f"joint {joint} has parent {parent}: parents must precede their children"
                )
            depth[joint] = 0 if joint == 0 else depth[parent] + 1
        self.parents = list(parents)
        self.levels = [
            [j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)
        ]
        # Position of each joint in the level-ordered concatenation, and its inverse permutation.
        order = [j for level in self.levels for j in level]
        position = {joint: i for i, joint in enumerate(order)}
        self._level_index = [torch.tensor(level) for level in self.levels]
        self._parent_position = [
            torch.tensor([position[parents[j]] for j in level]) for level in self.levels[1:]
        ]
        self._unpermute = torch.tensor([position[j] for j in range(len(parents))])

    def __len__(self) -> int:
        return len(self.parents)

    def world_transforms(
        self, rotations: torch.Tensor, joints: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose a skeleton.

        rotations: (B, J, 3, 3) local rotations; joints: (B, J, 3) rest joint positions.
        Returns the posed joint positions (B, J, 3) and the skinning transforms (B, J, 3, 4)
        that carry a rest-pose point skinned to each joint to its posed place.
        """
        device = rotations.device
        parents = torch.tensor(self.parents[1:], device=device)
        offsets = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, parents]], dim=1)
        local = torch.cat([rotations, offsets[..., None]], dim=-1)  # (B, J, 3, 4)

        levels = [local[:, self._level_index[0].to(device)]]
        steps = zip(self._level_index[1:], self._parent_position, strict=True)
        for index, parent_position in steps:
            so_far = torch.cat(levels, dim=1)[:, parent_position.to(device)]
            child = local[:, index.to(device)]
            rot = so_far[..., :3] @ child[..., :3]
            trans = so_far[..., :3] @ child[..., 3:] + so_far[..., 3:]
            levels.append(torch.cat([rot, trans], dim=-1))
        world = torch.cat(levels, dim=1)[:, self._unpermute.to(device)]

        posed_joints = world[..., 3]
        # Skinning transform: x -> R x + (t - R j_rest).
        rest_shift = (world[..., :3] @ joints[..., None])[..., 0]
        skinning = torch.cat([world[..., :3], (posed_joints - rest_shift)[..., None]], dim=-1)
        return posed_joints, skinning


def pose_feature(rotations: torch.Tensor) -> torch.Tensor:
    """Input of the pose-corrective blend shapes: (R - I) of every non-root joint, flattened."""
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).flatten(1)


def skin_vertices(
    vertices: torch.Tensor, weights: torch.Tensor, skinning: torch.Tensor
) -> torch.Tensor:
    """Blend the per-joint transforms with the skinning weights and apply them.

    vertices: (B, V, 3) rest-pose vertices; weights: (V, J); skinning: (B, J, 3, 4).
    """
    batch, num_joints = skinning.shape[:2]
    # Laid out (B, 12, V) so the blend is one batched GEMM and the per-vertex 3x4 transforms
    # apply as contiguous elementwise rows (tiny batched matmuls are slow on CPU).
    blended = (skinning.reshape(batch, num_joints, 12).transpose(1, 2) @ weights.T).view(
        batch, 3, 4, -1)
    x, y, z = vertices.transpose(1, 2)[:, :, None].unbind(1)
    # unbind, not four slices: its backward stacks the gradients instead of zero-filling a
    # full-size buffer per slice.
    column_x, column_y, column_z, shift = blended.unbind(2)
    posed = torch.addcmul(shift, column_x, x)
    posed = torch.addcmul(posed, column_y, y)
    posed = torch.addcmul(posed, column_z, z)
    return posed.transpose(1, 2)


def regress_joints(regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Joint positions (B, J, 3) as fixed linear combinations of the vertices (B, V, 3)."""
    batch, num_vertices = vertices.shape[:2]
    stacked = vertices.transpose(0, 1).reshape(num_vertices, batch * 3)
    product = torch.sparse.mm(regressor, stacked) if regressor.is_sparse else regressor @ stacked
    return product.view(-1, batch, 3).transpose(0, 1)

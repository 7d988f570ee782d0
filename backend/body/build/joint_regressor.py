"""Fit a joint regressor: joints as fixed linear combinations of nearby vertices.

The mesh and joints are known over a linear space of shapes (a mean plus directions). Each
joint's row is solved so that it reproduces the joint over that whole space, sums to one (moving
the mesh rigidly moves the joint with it) and uses only the vertices nearest the joint. Joints
whose motion along the directions is unknown (NaN) are pinned on the mean shape only and then
follow their nearby vertices.
"""

from __future__ import annotations

import numpy as np

_PRIOR_SUPPORT = 30


def fit_joint_regressor(
    mean_vertices: np.ndarray, mean_joints: np.ndarray, direction_vertices: np.ndarray,
    direction_joints: np.ndarray, support: int = 400,
) -> tuple[np.ndarray, float]:
    """Solve the (J, V) regressor; also return the largest residual over every constraint.

    mean_vertices (V, 3), mean_joints (J, 3), direction_vertices (K, V, 3), direction_joints
    (K, J, 3) (NaN: unknown).
    """
    num_vertices = len(mean_vertices)
    regressor = np.zeros((len(mean_joints), num_vertices))
    worst = 0.0
    for joint, target in enumerate(mean_joints):
        nearest = np.argsort(np.linalg.norm(mean_vertices - target, axis=1))[:support]
        known = ~np.isnan(direction_joints[:, joint, 0])
        meshes = np.concatenate([mean_vertices[None], direction_vertices[known]])[:, nearest]
        targets = np.concatenate([target[None], direction_joints[known, joint]])
        system = np.vstack([meshes.transpose(0, 2, 1).reshape(-1, len(nearest)),
                            np.ones((1, len(nearest)))])
        rhs = np.concatenate([targets.reshape(-1), [1.0]])
        # Of all exact solutions, the one nearest a smooth local average (inverse distance over
        # the closest vertices): exact on the shape space, well behaved off it.
        prior = np.zeros(len(nearest))
        distance = np.linalg.norm(mean_vertices[nearest[:_PRIOR_SUPPORT]] - target, axis=1)
        prior[:_PRIOR_SUPPORT] = 1.0 / (distance + 1e-3)
        prior /= prior.sum()
        weights = prior + np.linalg.lstsq(system, rhs - system @ prior, rcond=1e-8)[0]
        regressor[joint, nearest] = weights
        worst = max(worst, float(np.abs(system @ weights - rhs).max()))
    return regressor, worst

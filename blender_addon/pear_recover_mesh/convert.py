"""The one place where the backend's coordinates become Blender's.

The backend poses the body in the model's frame (Y up, the body facing +Z, metres) and places
it in the OpenCV camera frame (x right, y down, z forward): ``x_cam = MODEL_TO_CAMERA @ x +
cam_t``. Blender's world is Z up. The scene puts the footage's camera at the world origin
looking along +Y, so that

    world = CAMERA_TO_WORLD @ x_cam        (x right, y forward into the scene, z up)
    world = MODEL_TO_WORLD @ x + CAMERA_TO_WORLD @ cam_t

A person standing upright in the footage stands upright on Blender's Z axis, facing the
camera. Pure numpy: no bpy here, so it is tested directly.
"""

from __future__ import annotations

import math

import numpy as np

from .shared import conventions

MODEL_TO_CAMERA = np.array(conventions.MODEL_TO_CAMERA)
CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
MODEL_TO_WORLD = CAMERA_TO_WORLD @ MODEL_TO_CAMERA
# Blender cameras look down their local -Z with local +Y up: turned 90 degrees about X, the
# camera at the origin looks along world +Y with world +Z up, as CAMERA_TO_WORLD has it.
CAMERA_EULER = (math.pi / 2, 0.0, 0.0)
SENSOR_MM = 36.0


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors -> (..., 3, 3) matrices (Rodrigues)."""
    axis_angle = np.asarray(axis_angle, np.float64)
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    axis = axis_angle / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*x.shape, 3, 3)
    sin, cos = np.sin(angle)[..., None], np.cos(angle)[..., None]
    outer = axis[..., :, None] * axis[..., None, :]
    return cos * np.eye(3) + sin * cross + (1 - cos) * outer


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z), Blender's order."""
    m = np.asarray(matrix, np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate formulas; each row uses the one whose divisor is largest (stable).
    candidates = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]],
                 -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]],
                 -1),
    ], -2)
    diagonal = np.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = np.argmax(diagonal, -1)
    chosen = np.take_along_axis(candidates, best[..., None, None], -2)[..., 0, :]
    quaternion = chosen / np.linalg.norm(chosen, axis=-1, keepdims=True)
    return quaternion * np.where(quaternion[..., :1] < 0, -1.0, 1.0)


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z; normalised here) -> (..., 3, 3) rotations."""
    q = np.asarray(quaternion, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*w.shape, 3, 3)


def continuous(quaternions: np.ndarray) -> np.ndarray:
    """Flip signs along time (axis 0) so neighbours agree: q and -q are the same rotation,
    but interpolating between them spins the long way round."""
    out = np.array(quaternions, np.float64)
    for t in range(1, len(out)):
        flip = (out[t] * out[t - 1]).sum(-1) < 0
        out[t][flip] *= -1
    return out


def points_to_world(points: np.ndarray) -> np.ndarray:
    """Model-frame points (rest mesh, rest joints) -> Blender world, before any camera move."""
    return np.asarray(points, np.float64) @ MODEL_TO_WORLD.T


def camera_settings(focal: float, center: tuple[float, float], width: int, height: int
                    ) -> dict[str, float]:
    """Blender camera lens and shift for pinhole intrinsics in pixels (square pixels)."""
    size = max(width, height)  # Blender's sensor fit AUTO: the sensor spans the longer side
    return {"lens": focal * SENSOR_MM / size, "sensor_width": SENSOR_MM,
            "shift_x": (width / 2 - center[0]) / size,
            "shift_y": (center[1] - height / 2) / size}

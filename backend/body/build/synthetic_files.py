"""Synthetic model files in the real SMPL-X ``.npz`` and FLAME ``.pkl`` layouts.

The licensed files cannot ship with the project, so tests, benchmarks and the demo build on
these: the same keys, dtypes and array ranks as the official files (SMPL-X keeps its real
10,475 vertices because the ``smplx`` package indexes fixed vertex ids; FLAME keeps 5,023), with
a simple procedural figure: a sphere head (the FLAME region) on tube limbs, smooth random
shape/expression fields and small random pose correctives. Geometry is meaningless as a person;
the data layout is exact.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from ..joint_names import SMPLX_JOINT_NAMES, SMPLX_PARENTS

SMPLX_VERTICES = 10475
FLAME_VERTICES = 5023
_ROOT_PARENT = 4294967295  # how the official files store the root's "no parent"
_FLAME_ORIGIN = np.array([0.0, 0.65, 0.0])  # FLAME's frame sits elsewhere than SMPL-X's head

# Rest joint positions of the figure (metres, Y up, facing +Z, the person's left at +X).
_BODY_JOINTS = {
    "pelvis": (0, 0, 0), "left_hip": (0.06, -0.09, 0), "spine1": (0, 0.11, -0.01),
    "left_knee": (0.11, -0.48, 0), "spine2": (0, 0.24, 0), "left_ankle": (0.07, -0.88, -0.04),
    "spine3": (0, 0.30, 0.01), "left_foot": (0.12, -0.94, 0.08), "neck": (0, 0.52, -0.02),
    "left_collar": (0.07, 0.43, -0.01), "head": (0, 0.62, 0.01),
    "left_shoulder": (0.17, 0.46, -0.02), "left_elbow": (0.43, 0.45, -0.03),
    "left_wrist": (0.68, 0.45, -0.03), "jaw": (0, 0.64, 0.04),
    "left_eye_smplhf": (0.032, 0.71, 0.085),
}
_HEAD_CENTER = np.array([0.0, 0.70, 0.0])
_HEAD_RADIUS = 0.1


@dataclass(frozen=True)
class SyntheticFiles:
    smplx: Path
    flame: Path
    correspondence: Path
    eyelids: Path


def _joint_positions() -> np.ndarray:
    positions = np.zeros((len(SMPLX_JOINT_NAMES), 3))
    for index, name in enumerate(SMPLX_JOINT_NAMES):
        mirrored = name.replace("right_", "left_")
        if mirrored in _BODY_JOINTS:
            positions[index] = _BODY_JOINTS[mirrored]
        elif name in _BODY_JOINTS:
            positions[index] = _BODY_JOINTS[name]
        else:  # finger joint: fan out from the wrist
            finger, knuckle = mirrored[len("left_"):-1], int(mirrored[-1])
            spread = {"index": 0.03, "middle": 0.01, "ring": -0.01, "pinky": -0.03}
            wrist = np.array(_BODY_JOINTS["left_wrist"])
            if finger == "thumb":
                positions[index] = wrist + np.array([0.03, -0.01, 0.04]) + 0.025 * (knuckle - 1)
            else:
                positions[index] = wrist + [0.09 + 0.03 * (knuckle - 1), 0.0, spread[finger]]
        if name.startswith("right_"):
            positions[index, 0] *= -1
    return positions


def _tube(start: np.ndarray, end: np.ndarray, rings: int, radius: float,
          sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    axis = end - start
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 * np.linalg.norm(axis) else np.array(
        [0, 0, 1.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis / np.linalg.norm(axis), u)
    t = np.linspace(0.1, 0.9, rings)[:, None, None]
    angle = np.linspace(0, 2 * np.pi, sides, endpoint=False)[None, :, None]
    points = start + t * axis + radius * (np.cos(angle) * u + np.sin(angle) * v)
    faces = []
    for r in range(rings - 1):
        for s in range(sides):
            a, b = r * sides + s, r * sides + (s + 1) % sides
            faces += [(a, b, a + sides), (b, b + sides, a + sides)]
    return points.reshape(-1, 3), np.array(faces, dtype=np.int64).reshape(-1, 3)


def _head_sphere(count: int) -> tuple[np.ndarray, np.ndarray]:
    """A latitude-longitude sphere with exactly ``count`` vertices (top pole included)."""
    lons = 81
    lats = (count - 1) // lons
    assert lats * lons + 1 == count
    theta = np.linspace(0.12 * np.pi, 0.85 * np.pi, lats)[::-1]  # bottom (neck) ring first
    phi = np.linspace(0, 2 * np.pi, lons, endpoint=False)
    ring = np.stack([np.sin(theta)[:, None] * np.sin(phi), np.cos(theta)[:, None] + 0 * phi,
                     np.sin(theta)[:, None] * np.cos(phi)], axis=-1).reshape(-1, 3)
    points = np.concatenate([ring, [[0, 1, 0]]]) * _HEAD_RADIUS + _HEAD_CENTER
    faces = []
    for r in range(lats - 1):
        for s in range(lons):
            a, b = r * lons + s, r * lons + (s + 1) % lons
            faces += [(a, b, a + lons), (b, b + lons, a + lons)]
    top = lats * lons
    faces += [((lats - 1) * lons + s, (lats - 1) * lons + (s + 1) % lons, top)
              for s in range(lons)]
    return points, np.array(faces, dtype=np.int64)


def _smooth_weights(points: np.ndarray, joints: np.ndarray, nearest: int = 4,
                    sigma: float = 0.05) -> np.ndarray:
    distance = np.linalg.norm(points[:, None] - joints[None], axis=-1)
    weights = np.exp(-((distance / sigma) ** 2) + ((distance.min(1, keepdims=True) / sigma) ** 2))
    cutoff = np.sort(distance, axis=1)[:, nearest - 1: nearest]
    weights[distance > cutoff] = 0.0
    return weights / weights.sum(1, keepdims=True)


def _regressor(points: np.ndarray, joints: np.ndarray, rng: np.random.Generator,
               support: int = 12) -> np.ndarray:
    """Each joint a convex combination of the vertices nearest to it."""
    regressor = np.zeros((len(joints), len(points)))
    for j, joint in enumerate(joints):
        nearest = np.argsort(np.linalg.norm(points - joint, axis=1))[:support]
        weights = rng.uniform(0.5, 1.5, support)
        regressor[j, nearest] = weights / weights.sum()
    return regressor


def _random_fields(points: np.ndarray, count: int, scale: float,
                   rng: np.random.Generator) -> np.ndarray:
    """(N, 3, count) smooth displacement fields, decaying in size like a PCA basis."""
    homogeneous = np.concatenate([points - points.mean(0), np.ones((len(points), 1))], axis=1)
    linear = rng.normal(size=(count, 4, 3)) * scale / np.sqrt(1.0 + np.arange(count))[:, None,
                                                                                     None]
    return np.einsum("nk,ckd->ndc", homogeneous, linear)


def _body_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Figure vertices, faces and the ids of the head-sphere vertices (the FLAME region)."""
    joints = _joint_positions()
    head_points, head_faces = _head_sphere(FLAME_VERTICES)
    points, faces = [head_points], [head_faces]
    count = FLAME_VERTICES
    skip = {"head", "jaw", "left_eye_smplhf", "right_eye_smplhf"}
    bones = [(SMPLX_PARENTS[j], j) for j in range(1, len(joints))
             if SMPLX_JOINT_NAMES[j] not in skip]
    budget = SMPLX_VERTICES - FLAME_VERTICES
    rings = max(2, budget // (len(bones) * 8))
    for parent, child in bones:
        radius = 0.012 if "_" in SMPLX_JOINT_NAMES[child] and SMPLX_JOINT_NAMES[child][
            -1].isdigit() else 0.05
        tube_points, tube_faces = _tube(joints[parent], joints[child], rings, radius)
        if count + len(tube_points) > SMPLX_VERTICES:
            break
        points.append(tube_points)
        faces.append(tube_faces + count)
        count += len(tube_points)
    # Pad to the exact SMPL-X vertex count with points inside the pelvis (no faces).
    padding = SMPLX_VERTICES - count
    points.append(np.linspace([-0.03, -0.03, 0], [0.03, 0.03, 0], padding))
    return np.concatenate(points), np.concatenate(faces), np.arange(FLAME_VERTICES)


def write_synthetic_files(out_dir: str | Path, *, shape_components: int = 400,
                          seed: int = 0) -> SyntheticFiles:
    """Write ``SMPLX_NEUTRAL.npz``, ``FLAME_NEUTRAL.pkl``, ``SMPL-X__FLAME_vertex_ids.npy`` and
    ``eyelids.npz`` into ``out_dir``.

    ``shape_components`` is the SMPL-X shapedirs depth: 400 (SMPL-X 1.1: 300 shape + 100
    expression) or 20 (SMPL-X 1.0: 10 + 10, small and fast for tests).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    joints = _joint_positions()
    vertices, faces, head_local = _body_mesh()

    # Shuffle the vertex order so the correspondence is a real permutation, as in the real files.
    order = rng.permutation(SMPLX_VERTICES)
    inverse = np.argsort(order)
    vertices, faces = vertices[order], inverse[faces]
    head_ids = inverse[head_local]

    n_shape, n_expr = (300, 100) if shape_components >= 400 else (10, 10)
    shapedirs = _random_fields(vertices, n_shape + n_expr, 0.02, rng)
    in_head = np.zeros(SMPLX_VERTICES, bool)
    in_head[head_ids] = True
    shapedirs[~in_head, :, n_shape:] = 0.0  # expressions only move the face
    root_kintree = np.array([[_ROOT_PARENT, *SMPLX_PARENTS[1:]], range(len(joints))],
                            dtype=np.int64)
    head_faces = np.flatnonzero(in_head[faces].all(1))
    smplx_data = {
        "v_template": vertices.astype(np.float64),
        "f": faces.astype(np.uint32),
        "J_regressor": _regressor(vertices, joints, rng),
        "weights": _smooth_weights(vertices, joints),
        "kintree_table": root_kintree,
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": rng.normal(scale=2e-3, size=(SMPLX_VERTICES, 3, 54 * 9)).astype(np.float32),
        "hands_componentsl": np.linalg.qr(rng.normal(size=(45, 45)))[0],
        "hands_componentsr": np.linalg.qr(rng.normal(size=(45, 45)))[0],
        "hands_meanl": rng.normal(scale=0.1, size=45),
        "hands_meanr": rng.normal(scale=0.1, size=45),
        "lmk_faces_idx": rng.choice(head_faces, 51).astype(np.uint32),
        "lmk_bary_coords": rng.dirichlet(np.ones(3), 51),
        "dynamic_lmk_faces_idx": rng.choice(head_faces, (79, 17)).astype(np.uint32),
        "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)),
    }
    smplx_path = out / "SMPLX_NEUTRAL.npz"
    np.savez(smplx_path, **smplx_data)

    # FLAME: the head sphere in FLAME's own frame, slightly reshaped, with its 5-joint rig.
    flame_vertices = vertices[head_ids] - _FLAME_ORIGIN + rng.normal(scale=1e-3,
                                                                   size=(FLAME_VERTICES, 3))
    eye = np.array(_BODY_JOINTS["left_eye_smplhf"])
    flame_joints = np.array([[0, 0.58, -0.02], [0, 0.60, -0.02], [0, 0.64, 0.04], eye,
                             eye * [-1, 1, 1]]) - _FLAME_ORIGIN
    flame_index = np.full(SMPLX_VERTICES, -1)
    flame_index[head_ids] = np.arange(FLAME_VERTICES)
    flame_faces = flame_index[faces[head_faces]]
    flame_data = {
        "v_template": flame_vertices,
        "f": flame_faces.astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(_regressor(flame_vertices, flame_joints, rng)),
        "weights": _smooth_weights(flame_vertices, flame_joints),
        "kintree_table": np.array([[_ROOT_PARENT, 0, 1, 1, 1], range(5)], dtype=np.int64),
        "shapedirs": _random_fields(flame_vertices, 400, 0.01, rng),
        "posedirs": rng.normal(scale=2e-3, size=(FLAME_VERTICES, 3, 36)),
    }
    flame_path = out / "FLAME_NEUTRAL.pkl"
    with open(flame_path, "wb") as handle:
        pickle.dump(flame_data, handle, protocol=2)

    correspondence_path = out / "SMPL-X__FLAME_vertex_ids.npy"
    np.save(correspondence_path, head_ids.astype(np.int64))

    near_eye = [np.exp(-(np.linalg.norm(flame_vertices - flame_joints[j], axis=1) / 0.02) ** 2)
                for j in (3, 4)]
    eyelids_path = out / "eyelids.npz"
    np.savez(eyelids_path, l_eyelid=near_eye[0][:, None] * [0, -0.004, 0],
             r_eyelid=near_eye[1][:, None] * [0, -0.004, 0])
    return SyntheticFiles(smplx_path, flame_path, correspondence_path, eyelids_path)

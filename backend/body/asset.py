"""The EHM asset format: one versioned ``.npz`` holding a body model's arrays plus JSON metadata.

Array fields and their shapes, with symbolic dimensions shared across fields:

    V vertices, F faces, J joints, NB betas, NE expressions, T uv coordinates,
    H head vertices, HJ head joints, NS head shapes, NL eyelid directions, P = (J-1)*9.

The metadata (key ``meta.json``, UTF-8 bytes) carries the format version, joint names, the
parameter spec, which parameters drive which joints, landmark-set names, provenance and license.
Files are read with ``allow_pickle=False``: an asset is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..archive import ArchiveError, load_archive, save_archive
from .errors import AssetFormatError
from .params import ParamSpec, spec_hash

FORMAT_NAME = "pear-ehm-asset"
FORMAT_VERSION = 1
LANDMARK_PREFIX = "landmarks/"

# field -> (symbolic shape, dtype, required)
ARRAY_SCHEMA: dict[str, tuple[tuple[str | int, ...], str, bool]] = {
    "v_template": (("V", 3), "float32", True),
    "faces": (("F", 3), "int32", True),
    "parents": (("J",), "int32", True),
    "J_regressor": (("J", "V"), "float32", True),
    "lbs_weights": (("V", "J"), "float32", True),
    "shapedirs": (("V", 3, "NB"), "float32", True),
    "exprdirs": (("V", 3, "NE"), "float32", False),
    "posedirs": (("V", 3, "P"), "float32", False),
    "head_vertex_ids": (("H",), "int32", True),
    "uv_coords": (("T", 2), "float32", False),
    "uv_faces": (("F", 3), "int32", False),
    # A painted look (skin, eyes, lips, brows, hair) for renders detectors should accept.
    "vertex_colors": (("V", 3), "float32", False),
    # The swapped-in head model (FLAME in GUAVA's EHM); vertex i of it replaces
    # body vertex head_vertex_ids[i].
    "head_v_template": (("H", 3), "float32", False),
    "head_shapedirs": (("H", 3, "NS"), "float32", False),
    "head_exprdirs": (("H", 3, "NE"), "float32", False),
    "head_posedirs": (("H", 3, "HP"), "float32", False),
    "head_J_regressor": (("HJ", "H"), "float32", False),
    "head_lbs_weights": (("H", "HJ"), "float32", False),
    "head_parents": (("HJ",), "int32", False),
    "head_eyelid_dirs": (("NL", "H", 3), "float32", False),
}
HEAD_MODEL_FIELDS = (
    "head_v_template", "head_shapedirs", "head_exprdirs", "head_posedirs",
    "head_J_regressor", "head_lbs_weights", "head_parents",
)
LANDMARK_SCHEMA = {
    "vertices": (("K", "N"), "int32"),
    "weights": (("K", "N"), "float32"),
    "joint": (("K",), "int32"),
}
REQUIRED_META = ("format", "format_version", "asset_id", "kind", "joint_names", "param_spec",
                 "pose_joints", "license")


@dataclass
class LandmarkSet:
    """Named points on the body. Point k is posed joint ``joint[k]`` where that is >= 0, else the
    weighted sum of vertices ``vertices[k]`` with ``weights[k]`` (summing to one; a barycentric
    point on a triangle has three, a point inside the body more; unused slots weigh zero)."""

    vertices: np.ndarray
    weights: np.ndarray
    joint: np.ndarray
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.joint)

    @classmethod
    def on_triangles(cls, faces: np.ndarray, triangles: np.ndarray, bary: np.ndarray,
                     names: list[str]) -> LandmarkSet:
        """Barycentric points ``bary`` on triangles ``faces[triangles]``."""
        return cls(vertices=faces[triangles].astype(np.int32), weights=bary.astype(np.float32),
                   joint=np.full(len(triangles), -1, np.int32), names=list(names))


@dataclass
class Asset:
    """A validated body-model asset."""

    arrays: dict[str, np.ndarray]
    meta: dict
    landmarks: dict[str, LandmarkSet] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def asset_id(self) -> str:
        return self.meta["asset_id"]

    @property
    def joint_names(self) -> list[str]:
        return list(self.meta["joint_names"])

    @property
    def param_spec(self) -> list[ParamSpec]:
        return [ParamSpec.from_json(p) for p in self.meta["param_spec"]]

    @property
    def has_head_model(self) -> bool:
        return "head_v_template" in self.arrays

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.param_spec, self.joint_names)

    def summary(self) -> dict:
        """What ``backend models list`` shows."""
        return {
            "asset_id": self.asset_id,
            "kind": self.meta["kind"],
            "vertices": int(self.arrays["v_template"].shape[0]),
            "faces": int(self.arrays["faces"].shape[0]),
            "joints": len(self.joint_names),
            "params": {p.name: p.size for p in self.param_spec},
            "expression_names": self.meta.get("expression_names", []),
            "landmark_sets": {name: len(s) for name, s in self.landmarks.items()},
            "spec_hash": self.spec_hash,
            "license": self.meta["license"],
        }


def _check_dims(
    where: str, array: np.ndarray, shape: tuple, dtype: str, bound: dict[str, int]
) -> None:
    if array.dtype != np.dtype(dtype):
        raise AssetFormatError(f"{where}: expected dtype {dtype}, found {array.dtype}")
    if array.ndim != len(shape):
        raise AssetFormatError(
            f"{where}: expected {len(shape)} dimensions {shape}, found shape {array.shape}"
        )
    for axis, (want, got) in enumerate(zip(shape, array.shape, strict=True)):
        if isinstance(want, int):
            if got != want:
                raise AssetFormatError(f"{where}: axis {axis} must be {want}, found {array.shape}")
        elif bound.setdefault(want, got) != got:
            raise AssetFormatError(
                f"{where}: axis {axis} is {want}={got} here but {want}={bound[want]} elsewhere "
                f"(shape {array.shape})"
            )


def validate(asset: Asset) -> None:
    """Check every array's shape and dtype and the metadata; raise naming the offending field."""
    meta = asset.meta
    for key in REQUIRED_META:
        if key not in meta:
            raise AssetFormatError(f"meta.json: missing key {key!r}")
    if meta["format"] != FORMAT_NAME:
        raise AssetFormatError(f"meta.json: format is {meta['format']!r}, not {FORMAT_NAME!r}")
    if meta["format_version"] > FORMAT_VERSION:
        raise AssetFormatError(
            f"asset format version {meta['format_version']} is newer than this backend reads "
            f"({FORMAT_VERSION}): update the backend or rebuild the asset"
        )
    unknown = set(asset.arrays) - set(ARRAY_SCHEMA)
    if unknown:
        raise AssetFormatError(f"unknown array field(s): {sorted(unknown)}")

    bound: dict[str, int] = {}
    for name, (shape, dtype, required) in ARRAY_SCHEMA.items():
        if name not in asset.arrays:
            if required:
                raise AssetFormatError(f"{name}: required array is missing")
            continue
        _check_dims(name, asset.arrays[name], shape, dtype, bound)

    present = [f for f in HEAD_MODEL_FIELDS if f in asset.arrays]
    if present and len(present) != len(HEAD_MODEL_FIELDS):
        missing = sorted(set(HEAD_MODEL_FIELDS) - set(present))
        raise AssetFormatError(f"head model is incomplete: missing {missing}")
    if "P" in bound and bound["P"] != (bound["J"] - 1) * 9:
        raise AssetFormatError(f"posedirs: expected {(bound['J'] - 1) * 9} pose features "
                               f"(9 per non-root joint), found {bound['P']}")

    num_vertices, num_joints = bound["V"], bound["J"]
    if len(meta["joint_names"]) != num_joints:
        raise AssetFormatError(
            f"meta.json joint_names: {len(meta['joint_names'])} names for {num_joints} joints"
        )
    _check_index_range("faces", asset.arrays["faces"], num_vertices)
    _check_index_range("head_vertex_ids", asset.arrays["head_vertex_ids"], num_vertices)
    parents = asset.arrays["parents"]
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise AssetFormatError("parents: the root must come first (-1), parents before children")
    for name, joints in meta["pose_joints"].items():
        if any(not 0 <= j < num_joints for j in joints):
            raise AssetFormatError(f"meta.json pose_joints[{name!r}]: joint index out of range")

    for set_name, landmarks in asset.landmarks.items():
        set_bound: dict[str, int] = {}
        for part, (shape, dtype) in LANDMARK_SCHEMA.items():
            _check_dims(f"{LANDMARK_PREFIX}{set_name}/{part}", getattr(landmarks, part),
                        shape, dtype, set_bound)
        _check_index_range(f"{LANDMARK_PREFIX}{set_name}/vertices", landmarks.vertices,
                           num_vertices)
        on_mesh = landmarks.joint < 0
        if not np.allclose(landmarks.weights[on_mesh].sum(1), 1.0, atol=1e-3):
            raise AssetFormatError(f"{LANDMARK_PREFIX}{set_name}/weights: each point's weights "
                                   "must sum to one")
        if len(landmarks.names) not in (0, len(landmarks)):
            raise AssetFormatError(f"meta.json landmark_sets[{set_name!r}]: "
                                   f"{len(landmarks.names)} names for {len(landmarks)} points")
        if landmarks.joint.max(initial=-1) >= num_joints:
            raise AssetFormatError(f"{LANDMARK_PREFIX}{set_name}/joint: joint index out of range")


def _check_index_range(name: str, index: np.ndarray, upper: int) -> None:
    if index.size and (index.min() < 0 or index.max() >= upper):
        raise AssetFormatError(
            f"{name}: indices must lie in [0, {upper}), found [{index.min()}, {index.max()}]"
        )


def save_asset(asset: Asset, path: str | Path) -> Path:
    """Write an asset (atomically: a crash never leaves a half-written file under its name)."""
    meta = dict(asset.meta, landmark_sets={n: s.names for n, s in asset.landmarks.items()})
    payload = dict(asset.arrays)
    for set_name, landmarks in asset.landmarks.items():
        for part in LANDMARK_SCHEMA:
            payload[f"{LANDMARK_PREFIX}{set_name}/{part}"] = getattr(landmarks, part)
    return save_archive(path, payload, meta)


def load_asset(path: str | Path) -> Asset:
    """Read and validate an asset file."""
    try:
        payload, meta = load_archive(path, "asset")
    except ArchiveError as exc:
        raise AssetFormatError(str(exc)) from exc
    landmarks = {}
    for set_name, names in meta.pop("landmark_sets", {}).items():
        parts = {}
        for part in LANDMARK_SCHEMA:
            key = f"{LANDMARK_PREFIX}{set_name}/{part}"
            if key not in payload:
                raise AssetFormatError(f"{path}: {key} is missing")
            parts[part] = payload.pop(key)
        landmarks[set_name] = LandmarkSet(names=list(names), **parts)
    try:
        return Asset(arrays=payload, meta=meta, landmarks=landmarks)
    except AssetFormatError as exc:
        raise AssetFormatError(f"{path}: {exc}") from exc


"""Build EHM assets from user-installed SMPL-X (and optionally FLAME) files.

``smplx+flame`` reproduces GUAVA's Expressive Human Model: the FLAME head (shape, expression,
jaw, eyes, eyelids) replaces SMPL-X's head at the SMPL-X<->FLAME correspondence ids. ``smplx``
(no FLAME file) is plain SMPL-X, with its own expression space and jaw/eye joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..asset import FORMAT_NAME, FORMAT_VERSION, Asset, LandmarkSet
from ..joint_names import (
    FLAME_EYE_JOINTS,
    FLAME_POSE_JOINTS,
    SMPLX_EYE_JOINTS,
    SMPLX_JOINT_NAMES,
    SMPLX_POSE_JOINTS,
)
from ..params import standard_spec
from . import model_files

SMPLX_LICENSE = (
    "Built from SMPL-X model files (https://smpl-x.is.tue.mpg.de), licensed for "
    "non-commercial scientific research only. Do not use this asset commercially or redistribute "
    "it."
)
FLAME_LICENSE = (
    " Head from FLAME (https://flame.is.tue.mpg.de), licensed under CC-BY-4.0 for the 2020/2023 "
    "models; check the terms of the version you installed."
)
# SMPL-X joints that make up the head region when no FLAME correspondence is given.
_HEAD_JOINTS = (15, 22, 23, 24)


def _parents(kintree_table: np.ndarray) -> np.ndarray:
    parents = kintree_table[0].astype(np.int64)
    parents[0] = -1  # the official files store the root's parent as 2**32 - 1
    return parents.astype(np.int32)


def build_smplx_asset(
    smplx_path: str | Path,
    *,
    flame_path: str | Path | None = None,
    correspondence_path: str | Path | None = None,
    eyelids_path: str | Path | None = None,
    num_betas: int = 300,
    num_head_shape: int = 300,
    num_expression: int = 50,
    asset_id: str | None = None,
) -> Asset:
    """An ``smplx+flame`` asset when a FLAME file is given, else a plain ``smplx`` asset.

    Defaults follow GUAVA: 300 body shape, 300 head shape and 50 expression coefficients
    (each clipped to what the files hold).
    """
    smplx = model_files.read_smplx(smplx_path)
    expr_start, expr_count = model_files.smplx_shape_split(smplx["shapedirs"].shape[2])
    num_betas = min(num_betas, expr_start)
    num_vertices = smplx["v_template"].shape[0]
    arrays = {
        "v_template": smplx["v_template"],
        "faces": smplx["f"].astype(np.int32),
        "parents": _parents(smplx["kintree_table"]),
        "J_regressor": smplx["J_regressor"],
        "lbs_weights": smplx["weights"],
        "shapedirs": smplx["shapedirs"][:, :, :num_betas],
        "posedirs": smplx["posedirs"],
    }
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "joint_names": list(SMPLX_JOINT_NAMES),
        "provenance": {"smplx": str(Path(smplx_path).resolve())},
    }
    landmarks = {}
    if "lmk_faces_idx" in smplx:
        count = len(smplx["lmk_faces_idx"])
        landmarks["smplx_face_static"] = LandmarkSet.on_triangles(
            smplx["f"], smplx["lmk_faces_idx"], smplx["lmk_bary_coords"],
            names=[f"face{i:02d}" for i in range(count)])

    if flame_path is None:
        if correspondence_path is not None or eyelids_path is not None:
            raise model_files.ModelFileError(
                "a correspondence or eyelid file was given without a FLAME file (--flame)"
            )
        num_expression = min(num_expression, expr_count)
        arrays["exprdirs"] = smplx["shapedirs"][:, :, expr_start:expr_start + num_expression]
        head_region = np.isin(smplx["weights"].argmax(1), _HEAD_JOINTS)
        arrays["head_vertex_ids"] = np.flatnonzero(head_region).astype(np.int32)
        meta.update(kind="smplx", pose_joints=SMPLX_POSE_JOINTS, license=SMPLX_LICENSE)
        spec = standard_spec(num_joints=len(SMPLX_JOINT_NAMES), num_betas=num_betas,
                             num_head_shape=0, num_expression=num_expression, num_eyelids=0,
                             head_scale=False)
    else:
        if correspondence_path is None:
            raise model_files.ModelFileError(
                "building smplx+flame needs the SMPL-X<->FLAME vertex correspondence "
                "(--correspondence SMPL-X__FLAME_vertex_ids.npy, from the SMPL-X download page)"
            )
        flame = model_files.read_flame(flame_path)
        num_flame = flame["v_template"].shape[0]
        ids = model_files.read_correspondence(correspondence_path, num_flame, num_vertices)
        num_head_shape = min(num_head_shape, 300)
        num_expression = min(num_expression, flame["shapedirs"].shape[2] - 300)
        arrays.update(
            head_vertex_ids=ids.astype(np.int32),
            head_v_template=flame["v_template"],
            head_shapedirs=flame["shapedirs"][:, :, :num_head_shape],
            head_exprdirs=flame["shapedirs"][:, :, 300:300 + num_expression],
            head_posedirs=flame["posedirs"],
            head_J_regressor=flame["J_regressor"],
            head_lbs_weights=flame["weights"],
            head_parents=_parents(flame["kintree_table"]),
        )
        num_eyelids = 0
        if eyelids_path is not None:
            arrays["head_eyelid_dirs"] = model_files.read_eyelids(eyelids_path, num_flame)
            num_eyelids = 2
        # SMPL-X's own jaw and eye joints stay at rest: FLAME articulates them.
        body_layout = {k: v for k, v in SMPLX_POSE_JOINTS.items() if k not in FLAME_POSE_JOINTS}
        meta.update(
            kind="smplx+flame",
            pose_joints=body_layout,
            head_model={"name": "flame", "pose_joints": FLAME_POSE_JOINTS,
                        "eye_joints": list(FLAME_EYE_JOINTS),
                        "body_eye_joints": list(SMPLX_EYE_JOINTS)},
            license=SMPLX_LICENSE + FLAME_LICENSE,
        )
        meta["provenance"].update(flame=str(Path(flame_path).resolve()),
                                  correspondence=str(Path(correspondence_path).resolve()))
        if eyelids_path is not None:
            meta["provenance"]["eyelids"] = str(Path(eyelids_path).resolve())
        spec = standard_spec(num_joints=len(SMPLX_JOINT_NAMES), num_betas=num_betas,
                             num_head_shape=num_head_shape, num_expression=num_expression,
                             num_eyelids=num_eyelids, head_scale=True)

    meta["asset_id"] = asset_id or meta["kind"]
    meta["param_spec"] = [p.to_json() for p in spec]
    arrays = {k: _as_asset_dtype(k, v) for k, v in arrays.items()}
    return Asset(arrays=arrays, meta=meta, landmarks=landmarks)


def _as_asset_dtype(name: str, value: np.ndarray) -> np.ndarray:
    integer = name in ("faces", "parents", "head_vertex_ids", "head_parents", "uv_faces")
    return np.ascontiguousarray(value, dtype=np.int32 if integer else np.float32)

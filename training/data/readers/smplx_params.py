"""SMPL-X parameter sets (the BEDLAM/AGORA style of training labels): an npz with
``imgname``, ``center``, ``scale`` (the box is ``scale * 200`` pixels square), the pose either as
``pose_cam`` (N, 165: SMPL-X's 55 joints, axis-angle, root in the OpenCV camera frame, as BEDLAM
ships) or as separate ``global_orient``, ``body_pose``, ``left_hand_pose``, ``right_hand_pose``,
``jaw_pose``, ``leye_pose``, ``reye_pose`` arrays, and optional ``shape``/``betas``,
``expression`` and ``cam_int`` (N, 3, 3: the frame's intrinsics).

Parameters are labels only for an SMPL-X asset (same joint tree and parameters): the root is
turned from the camera frame into the project's model frame (``backend.camera``), hand poses
are taken as full axis-angle with zero the flat hand, and as many betas/expression
coefficients as the asset has. The open asset gets nothing but the crop and its camera from
this format, so such a source only makes sense with an SMPL-X asset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from backend.conventions import MODEL_TO_CAMERA

from ...errors import TrainingDataError
from ..batch import Sample
from .crop import box_from_center_scale, crop_sample, is_smplx, read_rgb

REQUIRED = ("imgname", "center", "scale")
# Slices of the 165-value full pose, and the separate arrays' names.
POSE_PARTS = {"global_orient": (0, 1, "global_orient"), "body_pose": (1, 22, "body_pose"),
              "jaw_pose": (22, 23, "jaw_pose"), "leye": (23, 24, "leye_pose"),
              "reye": (24, 25, "reye_pose"), "left_hand_pose": (25, 40, "left_hand_pose"),
              "right_hand_pose": (40, 55, "right_hand_pose")}


class SmplxParamSamples:
    """The people of an SMPL-X parameter npz; images under ``images`` (default: the npz's
    folder) by ``imgname``."""

    def __init__(self, path: str | Path, asset: Asset, images: str | Path | None = None):
        self.file = Path(path)
        self.images = Path(images) if images is not None else self.file.parent
        self.asset = asset
        if not self.file.is_file():
            raise TrainingDataError(f"{self.file}: no such file; smplx-params: takes an npz "
                                    f"with {', '.join(REQUIRED)} and SMPL-X poses")
        try:
            with np.load(self.file, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
            self.names = [str(name) for name in data["imgname"]]
            count = len(self.names)
            self.boxes = box_from_center_scale(data["center"], data["scale"])
            self.poses = _poses(data, count)
            self.coeffs = {name: np.asarray(data[key], np.float32).reshape(count, -1)
                           for name, key in (("betas", "betas"), ("betas", "shape"),
                                             ("expression", "expression")) if key in data}
            self.intrinsics = (np.asarray(data["cam_int"], np.float64).reshape(count, 3, 3)
                               if "cam_int" in data else None)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise TrainingDataError(
                f"{self.file}: not an SMPL-X parameter npz ({type(exc).__name__}: {exc}); "
                f"expected {', '.join(REQUIRED)} and pose_cam (N, 165) or global_orient, "
                "body_pose, ... per person") from None

    def __len__(self) -> int:
        return len(self.names)

    def params(self, index: int) -> dict[str, np.ndarray]:
        """The asset's parameters for person ``index`` (empty unless the asset is SMPL-X)."""
        if not is_smplx(self.asset):
            return {}
        pose = {name: part[index].reshape(-1, 3) for name, part in self.poses.items()}
        # Camera-frame root -> model-frame root: the project places bodies by MODEL_TO_CAMERA.
        root = (torch.as_tensor(np.asarray(MODEL_TO_CAMERA, np.float64))
                @ axis_angle_to_matrix(torch.as_tensor(pose["global_orient"][0])))
        params = {"global_orient": matrix_to_axis_angle(root).numpy().reshape(1, 3),
                  "eye_pose": np.concatenate([pose.pop("leye"), pose.pop("reye")]),
                  **{name: value for name, value in pose.items() if name != "global_orient"}}
        sizes = {spec.name: spec.shape for spec in self.asset.param_spec}
        for name, values in self.coeffs.items():
            if name in sizes:
                kept = np.zeros(sizes[name], np.float32)
                used = min(len(kept), values.shape[1])
                kept[:used] = values[index, :used]
                params[name] = kept
        return {name: np.asarray(value, np.float32) for name, value in params.items()
                if name in sizes and np.size(value) == int(np.prod(sizes[name]))}

    def __getitem__(self, index: int) -> Sample:
        focal = principal = None
        if self.intrinsics is not None:
            matrix = self.intrinsics[index]
            focal, principal = float(matrix[0, 0]), (float(matrix[0, 2]), float(matrix[1, 2]))
        return crop_sample(read_rgb(self.images / self.names[index]), self.boxes[index], {},
                           f"smplx-params/{self.file.stem}/{index}", self.params(index),
                           focal, principal)


def _poses(data: dict, count: int) -> dict[str, np.ndarray]:
    if "pose_cam" in data:
        full = np.asarray(data["pose_cam"], np.float64).reshape(count, 55, 3)
        return {name: full[:, start:stop] for name, (start, stop, _) in POSE_PARTS.items()}
    return {name: np.asarray(data[key], np.float64).reshape(count, stop - start, 3)
            for name, (start, stop, key) in POSE_PARTS.items()}

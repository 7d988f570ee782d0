"""Preprocessed 3D-pose datasets as npz (H36M, 3DPW, MPI-INF-3DHP), in the two layouts the
OpenMMLab tools publish:

- mmhuman3d's HumanData: ``image_path``, ``bbox_xywh`` and an ``smpl`` dict (``global_orient``,
  ``body_pose`` (23 joints), ``betas``); its keypoints (the 190-point ``human_data``
  convention) are not read;
- the SPIN layout mmpose's mesh datasets use: ``imgname``, ``center``, ``scale`` (the box is
  ``scale * 200`` pixels square), ``part`` (24 2D keypoints in SPIN's order), optional ``pose``
  (72) and ``shape`` (10).

2D keypoints go into the asset's ``mediapipe_pose33`` (17 of SPIN's 24 have a BlazePose
counterpart: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles). SMPL poses are
labels only for an SMPL-X asset and only with Eq. 4's offset (``smpl_offset``): global_orient
and body_pose; SMPL's betas are another shape space and are not used. No joints3d: the 3D
keypoints (H36M's 17 or SPIN's 24) cover none of the asset's finger joints, and a sample's
joints3d is all of the asset's joints or nothing. For the open asset: keypoints only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.body.asset import Asset

from ...errors import TrainingDataError
from ..batch import Sample
from .crop import box_from_center_scale, crop_sample, is_smplx, place_keypoints, read_rgb
from .smpl_offset import smpl_to_smplx

# SPIN's 24 keypoints that BlazePose's 33 also has: (SPIN index, pose33 index).
SPIN24_TO_POSE33 = [(19, 0), (20, 2), (21, 5), (22, 7), (23, 8), (9, 11), (8, 12), (10, 13),
                    (7, 14), (11, 15), (6, 16), (3, 23), (2, 24), (4, 25), (1, 26), (5, 27),
                    (0, 28)]
HUMANDATA_KEYS = ("image_path", "bbox_xywh")
SPIN_KEYS = ("imgname", "center", "scale", "part")


def _load(path: Path) -> dict:
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file; mmhuman3d: takes a preprocessed "
                                "dataset .npz (HumanData or the SPIN layout)")
    try:
        with np.load(path, allow_pickle=True) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise TrainingDataError(f"{path}: not a readable .npz ({exc})") from None
    for key in ("smpl", "meta"):
        if key in data and data[key].dtype == object and data[key].shape == ():
            data[key] = data[key].item()
    return data


class Mmhuman3dSamples:
    """The people of one preprocessed npz; images under ``images`` (default: the npz's
    folder) by their listed relative path, or found by file name below it. ``offset``: Eq. 4's
    (22, 3) SMPL -> SMPL-X offset, for an SMPL-X asset (without it, keypoints only)."""

    def __init__(self, path: str | Path, asset: Asset, images: str | Path | None = None,
                 offset: np.ndarray | None = None):
        self.file = Path(path)
        data = _load(self.file)
        self.images = Path(images) if images is not None else self.file.parent
        self.asset = asset
        self.offset = offset if is_smplx(asset) else None
        self._found: dict[str, Path] | None = None
        try:
            if all(key in data for key in HUMANDATA_KEYS):
                self._from_humandata(data)
            elif all(key in data for key in SPIN_KEYS):
                self._from_spin(data)
            else:
                raise KeyError("neither layout's keys")
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise TrainingDataError(
                f"{self.file}: not a preprocessed dataset npz ({type(exc).__name__}: {exc}); "
                f"expected HumanData ({', '.join(HUMANDATA_KEYS)}, smpl) or the SPIN layout "
                f"({', '.join(SPIN_KEYS)}, 24 keypoints); found {sorted(data)}") from None

    def _from_humandata(self, data: dict) -> None:
        self.names = [str(name) for name in data["image_path"]]
        boxes = np.asarray(data["bbox_xywh"], np.float64)[:, :4]
        self.boxes = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        self.keypoints = None
        smpl = data.get("smpl")
        self.poses = None
        if isinstance(smpl, dict) and "body_pose" in smpl:
            count = len(self.names)
            self.poses = (np.asarray(smpl["global_orient"], np.float64).reshape(count, 3),
                          np.asarray(smpl["body_pose"], np.float64).reshape(count, -1, 3))

    def _from_spin(self, data: dict) -> None:
        self.names = [str(name) for name in data["imgname"]]
        self.boxes = box_from_center_scale(data["center"], data["scale"])
        self.keypoints = np.asarray(data["part"], np.float64)
        if self.keypoints.shape[1:] != (24, 3):
            raise ValueError(f"'part' has shape {self.keypoints.shape}, SPIN's is (N, 24, 3)")
        self.poses = None
        if "pose" in data:
            pose = np.asarray(data["pose"], np.float64).reshape(len(self.names), 24, 3)
            self.poses = (pose[:, 0], pose[:, 1:])

    def __len__(self) -> int:
        return len(self.names)

    def _image_path(self, name: str) -> Path:
        direct = self.images / name
        if direct.is_file():
            return direct
        if self._found is None:  # the dataset's own folders: look once, by file name
            self._found = {p.name: p for p in self.images.rglob("*") if p.is_file()}
        return self._found.get(Path(name).name, direct)

    def __getitem__(self, index: int) -> Sample:
        points = {}
        if self.keypoints is not None:
            points = place_keypoints(self.keypoints[index],
                                     {"mediapipe_pose33": SPIN24_TO_POSE33}, self.asset)
        params = {}
        if self.poses is not None and self.offset is not None:
            params = smpl_to_smplx(self.poses[0][index], self.poses[1][index], self.offset)
        return crop_sample(read_rgb(self._image_path(self.names[index])), self.boxes[index],
                           points, f"mmhuman3d/{self.file.stem}/{index}", params)

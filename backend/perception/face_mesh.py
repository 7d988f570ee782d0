"""MediaPipe Face Mesh on single images: 478 landmarks (468 + irises) in pixels.

The models ship inside the mediapipe 0.10.21 wheel; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from ..errors import SetupError

FACE_LANDMARKS = 478
INSTALL_HINT = (
    "MediaPipe is not installed. Run `make venv` (it installs mediapipe==0.10.21 without its "
    "heavy optional dependencies), or: pip install --no-deps mediapipe==0.10.21 plus the "
    "project's [perception] extra."
)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null: MediaPipe's C++ logs bypass Python's sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class QuietSolution:
    """A MediaPipe solution (or task) whose native log lines (absl warnings at graph start and
    on the first frames, nothing a user can act on) are kept off the console; ``process``
    calls its ``method``."""

    _NOISY_CALLS = 2

    def __init__(self, make, method: str = "process"):
        with _native_stderr_silenced():
            self._solution = make()
        self._method = getattr(self._solution, method)
        self._calls = 0

    def process(self, image):
        if self._calls < self._NOISY_CALLS:
            self._calls += 1
            with _native_stderr_silenced():
                return self._method(image)
        return self._method(image)

    def close(self) -> None:
        self._solution.close()


def import_mediapipe():
    """mediapipe, with its C++ logging (GLOG/absl INFO and warnings) kept off the console."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe
    except ImportError as exc:
        raise SetupError(INSTALL_HINT) from exc
    return mediapipe


class FaceMeshDetector:
    """Callable: RGB uint8 image (H, W, 3) -> (478, 2) pixel coordinates, or None."""

    def __init__(self, min_confidence: float = 0.5):
        mp = import_mediapipe()
        self._mesh = QuietSolution(lambda: mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=1,
            min_detection_confidence=min_confidence))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * width, p.y * height] for p in points])

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *_) -> None:
        self.close()

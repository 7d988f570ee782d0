"""The estimators ``backend fit``, ``bake`` and ``serve`` offer (``recovery.py`` runs them);
torch-free, so the command line can list them cheaply."""

from __future__ import annotations

from .errors import InputError

ESTIMATORS = {
    "tracker": "MediaPipe Holistic keypoints per frame, then the EHM tracker over the clip",
    "regressor": "the PEAR network on each frame's person crop (needs a trained checkpoint)",
    "regressor+tracker": "the PEAR network's estimate refined by a short tracker run (needs "
                         "a trained checkpoint)",
}


class UnknownEstimator(InputError):
    """An estimator name this project does not have."""


def check_estimator(name: str) -> str:
    if name not in ESTIMATORS:
        raise UnknownEstimator(f"unknown estimator {name!r}; choose from {list(ESTIMATORS)}")
    return name


def uses_regressor(estimator: str) -> bool:
    return check_estimator(estimator).startswith("regressor")

"""Accuracy metrics: Procrustes-aligned errors, as the human mesh recovery literature reports."""

from __future__ import annotations

import numpy as np
import torch

from ..body.model import BodyModel

BODY_JOINTS = 22  # pelvis and the 21 body joints: the set body PA-MPJPE is reported on


def procrustes_align(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity-align ``predicted`` (N, 3) onto ``target`` (N, 3) (rotation, scale, shift)."""
    mu_p, mu_t = predicted.mean(0), target.mean(0)
    p, t = predicted - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(p.T @ t)
    d = np.sign(np.linalg.det(u @ vt))
    correction = np.diag([1.0, 1.0, d])
    rotation = u @ correction @ vt
    scale = (s * np.diag(correction)).sum() / (p**2).sum()
    return scale * p @ rotation + mu_t


def pa_error_mm(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-point error (mm) after Procrustes alignment, averaged over frames (T, N, 3)."""
    errors = [np.linalg.norm(procrustes_align(p, t) - t, axis=1).mean()
              for p, t in zip(predicted, target, strict=True)]
    return 1000.0 * float(np.mean(errors))


def body_pa_mm(model: BodyModel, params: dict[str, np.ndarray], truth: np.ndarray) -> float:
    """Body PA-MPJPE (mm, to 0.01) of ``params`` (name -> (T, ...), posed by ``model``) against
    the true joints ``truth`` (T, J, 3) of the same frames."""
    with torch.no_grad():
        joints = model({name: torch.as_tensor(np.array(value), dtype=model.v_template.dtype)
                        for name, value in params.items()}).joints.double().numpy()
    return round(pa_error_mm(joints[:, :BODY_JOINTS], truth[:, :BODY_JOINTS]), 2)


def action_correlations(fitted: np.ndarray, truth: dict[str, np.ndarray], names: list[str],
                        actions: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Pearson correlation over frames between each facial action's true track (``truth``:
    action -> (T,)) and the mean of the fitted weights (``fitted``: (T, E), columns named by
    ``names``) of the blend shapes it drives (``actions``: action -> shape names). A fitted
    track that never moves correlates 0."""
    out = {}
    for action, shapes in actions.items():
        track = fitted[:, [names.index(shape) for shape in shapes]].mean(1)
        moving = track.std() > 1e-9 and truth[action].std() > 1e-9
        out[action] = float(np.corrcoef(track, truth[action])[0, 1]) if moving else 0.0
    return out

"""``backend priors train``: fit the pose prior to motion capture. Body poses are the clips'
frames retargeted onto the asset (``backend.mocap``), whole capture subjects held out; the
number of mixture components is chosen by the held-out log-likelihood. Hands come from the
finger model (CMU's clips barely move their fingers), a mixture per hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..body.model import BodyModel
from ..errors import InputError
from ..mocap.poses import CMU_HINT, VALIDATION_FRACTION, MocapPoses, RangePoses, retargeted_clips
from .mixture import fit_gaussian_mixture, mean_log_likelihood
from .pose_prior import PosePrior

BODY_COMPONENTS = (1, 4, 8, 16)
HAND_COMPONENTS = (1, 4, 8)
PRIOR_FPS = 30.0  # mocap frames kept per second for the prior: more than synth's 10, still not
# the near-copies of 120 fps
HAND_SAMPLES = 4000  # finger-model draws per hand to fit (and as many again to choose by)
RANDOM_POSES = 1000  # per-joint-range poses scored for comparison
# Added to every covariance's diagonal (rad^2): no joint is held tighter than ~6 degrees. With
# 1e-4, joints the retargeted clips barely turn (wrists, collars, head) were pinned so hard
# that motion outside CMU's (the demo's performance) fitted 39 mm off instead of 28.
VARIANCE_FLOOR = 1e-2


def train_pose_prior(model: BodyModel, mocap: str | Path,
                     body_components: tuple[int, ...] = BODY_COMPONENTS,
                     hand_components: tuple[int, ...] = HAND_COMPONENTS, seed: int = 0,
                     target_fps: float = PRIOR_FPS,
                     validation_fraction: float = VALIDATION_FRACTION) -> PosePrior:
    """The prior, with what it scored in ``info`` (held-out log-likelihood per component
    count, per-joint-range poses' for comparison, the data it saw)."""
    folder = Path(mocap)
    clips, fingers = retargeted_clips(folder, model, target_fps)
    train = MocapPoses(clips, fingers, "train", validation_fraction)
    val = MocapPoses(clips, fingers, "val", validation_fraction)
    rng = np.random.default_rng(seed)
    ranges = RangePoses(model)
    random_poses = np.stack([ranges.draw(rng)[0]["body_pose"].reshape(-1)
                             for _ in range(RANDOM_POSES)])
    body, body_scores = _choose(train.body_pose.reshape(len(train), -1),
                                val.body_pose.reshape(len(val), -1), body_components, seed)
    mixtures, info = {"body_pose": body}, {
        "mocap": {"folder": folder.name, "clips": len(clips), "fps": target_fps,
                  "train_subjects": train.subjects, "val_subjects": val.subjects,
                  "train_frames": len(train), "val_frames": len(val)},
        "body_pose": {"components": len(body.weights), "val_log_likelihood": body_scores,
                      "random_pose_log_likelihood": round(
                          mean_log_likelihood(body, random_poses), 2)}}
    for side in ("left", "right"):
        draws = np.stack([fingers.hand_pose(side, *fingers.draw_levels(rng)).reshape(-1)
                          for _ in range(2 * HAND_SAMPLES)])
        name = f"{side}_hand_pose"
        mixtures[name], scores = _choose(draws[:HAND_SAMPLES], draws[HAND_SAMPLES:],
                                         hand_components, seed)
        info[name] = {"components": len(mixtures[name].weights), "val_log_likelihood": scores,
                      "source": "finger model"}
    return PosePrior(model.asset_id, mixtures, info)


def _choose(train: np.ndarray, val: np.ndarray, choices: tuple[int, ...], seed: int):
    """The mixture with the best held-out mean log-likelihood, and every choice's score; a
    choice with more parameters than the frames can fit is not tried."""
    feasible = [k for k in choices if len(train) >= k * (train.shape[1] + 1)]
    if not feasible:
        raise InputError(f"{len(train)} training frames are too few for a pose prior (at least "
                         f"{train.shape[1] + 1}): give more clips. " + CMU_HINT)
    scores, best = {}, None
    for components in feasible:
        mixture = fit_gaussian_mixture(train, components, seed, regularization=VARIANCE_FLOOR)
        scores[str(components)] = round(mean_log_likelihood(mixture, val), 2)
        if best is None or scores[str(components)] > scores[str(len(best.weights))]:
            best = mixture
    return best, scores

"""From a clip's frames to its 3D result, with any of the estimators. ``backend fit``,
``backend bake`` and the server's sessions all run clips through here, so a clip sent over
the network gives what fitting its file gives.

- ``tracker``: MediaPipe Holistic keypoints per frame, then the EHM tracker over the clip.
- ``regressor``: the PEAR network on each frame's person crop (the box from the same
  detections), no optimization; the keypoints are only used to find the person and to report
  the reprojection error.
- ``regressor+tracker``: the network's estimate starts the tracker on a short schedule
  (``REFINE_ITERATIONS``, about a third of the steps).

The regressor needs a trained checkpoint for the body model; without one it is unavailable
with the reason, never a randomly initialised network.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..body.asset import Asset
from ..body.model import BodyModel
from ..body.params import subject_values
from ..camera import principal_point
from ..estimator_names import check_estimator, uses_regressor
from ..paths import checkpoints_dir
from ..perception.crops import CropBudget
from ..perception.frames import Frame
from ..perception.holistic import ClipDetections, ClipDetector, FrameLandmarks
from ..perception.people import PersonNotFound
from ..results import ClipResults
from ..temporal.postprocess import postprocess
from ..tracking.tracker import (
    PART_LANDMARKS,
    REFINE_ITERATIONS,
    FitResult,
    Keypoints,
    Progress,
    Tracker,
    TrackerConfig,
    check_landmark_sets,
    reprojection_errors,
)


def checkpoint_path(asset_id: str, checkpoint: str | Path | None = None) -> Path:
    """The regressor checkpoint to use: the one given, else ``$PEAR_HOME/checkpoints/<asset>``."""
    return Path(checkpoint) if checkpoint is not None else checkpoints_dir() / asset_id


def regressor_problem(asset: Asset, checkpoint: str | Path | None = None) -> str | None:
    """Why the regressor cannot run for ``asset`` (None: it can); reads no weights."""
    from ..regressor.checkpoint import check_checkpoint
    from ..regressor.errors import CheckpointMismatch, RegressorUnavailable

    try:
        check_checkpoint(checkpoint_path(asset.asset_id, checkpoint), asset)
    except (RegressorUnavailable, CheckpointMismatch) as exc:
        return str(exc)
    return None


def load_regressor(asset: Asset, checkpoint: str | Path | None = None,
                   device: str | None = None, compile: bool = False,
                   adapter: str | Path | None = None):
    """The trained regressor for ``asset`` (``compile``: through ``torch.compile``;
    ``adapter``: with that adapter on it); raises ``RegressorUnavailable`` (no checkpoint) or
    ``CheckpointMismatch`` (one for another body model or network, an adapter for another
    base)."""
    from ..regressor.inference import Regressor

    return Regressor(checkpoint_path(asset.asset_id, checkpoint), asset, device=device,
                     compile=compile, adapter=adapter)


class FrameRegressions:
    """The regressor over a clip's frames as they come, seen through the clip's camera (focal
    length and principal point, pixels); frames without a person box are skipped and later
    take their nearest neighbour's estimate. Queued frames run ``batch`` at a time; with
    ``batch`` None only when told (``run_together``: the server batches across sessions)."""

    def __init__(self, regressor, focal: float, center: tuple[float, float],
                 batch: int | None = 8):
        self.regressor, self.focal, self.center, self.batch = regressor, focal, center, batch
        self._queue: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._found: dict[int, dict[str, np.ndarray]] = {}  # position -> one frame's estimate
        self.seconds = 0.0

    def add(self, position: int, image: np.ndarray, box: np.ndarray) -> None:
        if np.isnan(box).any():
            return
        self._queue.append((position, image, box))
        if self.batch is not None and len(self._queue) >= self.batch:
            self.run_together([self])

    @property
    def queued(self) -> int:
        """Frames waiting for the regressor."""
        return len(self._queue)

    def estimate(self, position: int) -> dict[str, np.ndarray] | None:
        """The regressor's estimate of the frame at ``position`` (one frame's values, no
        time axis), once it has run; None for a frame without a person box or still queued."""
        return self._found.get(position)

    @staticmethod
    def run_together(clips: list[FrameRegressions]) -> int:
        """One forward of the regressor (the clips must share it) for every frame the clips
        have queued, each seen through its own clip's camera; returns how many frames ran.
        The queues are emptied even if the forward fails (those frames get no estimate)."""
        queued = [(clip, item) for clip in clips for item in clip._queue]
        if not queued:
            return 0
        start = time.perf_counter()
        try:
            prediction = clips[0].regressor.predict(
                [image for _, (_, image, _) in queued],
                np.stack([box for _, (_, _, box) in queued]),
                focal=np.array([clip.focal for clip, _ in queued]),
                center=np.array([clip.center for clip, _ in queued]))
        finally:
            for clip in clips:
                clip._queue.clear()
        for k, (clip, (position, _, _)) in enumerate(queued):
            estimate = {name: value[k] for name, value in prediction.params.items()}
            estimate["cam_t"] = prediction.cam_t[k]
            clip._found[position] = estimate
        per_frame = (time.perf_counter() - start) / len(queued)
        for clip, _ in queued:
            clip.seconds += per_frame
        return len(queued)

    def finish(self, frames: int) -> dict[str, np.ndarray]:
        """Per-frame estimates (T, ...) of every parameter and ``cam_t``."""
        self.run_together([self])
        if not self._found:
            raise PersonNotFound("nobody was found in any frame, so the regressor had no "
                                 "person to crop; check the footage shows a person")
        known = np.array(sorted(self._found))
        nearest = known[np.abs(np.arange(frames)[:, None] - known[None]).argmin(1)]
        return {name: np.stack([self._found[p][name] for p in nearest])
                for name in self._found[known[0]]}


def regressor_fit(start: dict[str, np.ndarray], model: BodyModel, detections: ClipDetections,
                  focal: float, center: tuple[float, float],
                  subject: dict[str, np.ndarray] | None, seconds: float) -> FitResult:
    """The regressor's estimates as a clip fit: per-subject values averaged over the frames
    (or held at ``subject``), reprojection errors against the detections."""
    frames = len(detections.frames)
    defaults = model.default_params(frames)  # transl among them: the camera carries it
    params = {}
    for name, spec in model.spec.items():
        value = start[name] if name in start else defaults[name].numpy()
        params[name] = value.mean(0, keepdims=True) if spec.per == "subject" else value
    params.update(subject_values(model.spec.values(), subject or {}))
    params = {name: np.asarray(value, np.float32) for name, value in params.items()}
    with torch.no_grad():
        landmarks = model({name: torch.as_tensor(value).expand(frames, *value.shape[1:])
                           for name, value in params.items()}).landmarks
    errors = reprojection_errors({s: landmarks[s] for s in PART_LANDMARKS.values()},
                                 torch.as_tensor(start["cam_t"], dtype=torch.float32), focal,
                                 torch.tensor(center), detections.parts)
    return FitResult(params=params, cam_t=start["cam_t"].astype(np.float32), focal=focal,
                     center=center, reprojection_px=errors, stage_losses=[], seconds=seconds)


def recover_clip(detections: ClipDetections, fps: float, asset: Asset, smooth: float = 1.0,
                 focal: float | None = None, device: str | None = None,
                 progress: Progress | None = None,
                 subject: dict[str, np.ndarray] | None = None,
                 estimator: str = "tracker", start: dict[str, np.ndarray] | None = None,
                 regressor_s: float = 0.0, center: tuple[float, float] | None = None,
                 contact: bool = True) -> tuple[ClipResults, FitResult]:
    """A clip's detections (and, for the regressor estimators, its per-frame ``start``) ->
    the estimator -> elbow-twist fix and smoothing -> results. ``subject``: per-subject
    parameters to hold fixed (see ``TrackerConfig.subject``); ``focal``, ``center``: the
    camera's focal length and principal point in pixels, if known; ``contact``: the
    tracker's feet-on-the-ground stage (``TrackerConfig.contact``)."""
    if uses_regressor(estimator) and start is None:
        raise ValueError(f"the {estimator!r} estimator needs the regressor's per-frame estimates")
    model = BodyModel(asset)
    if estimator == "regressor":
        fit = regressor_fit(start, model, detections,
                            focal or float(max(detections.width, detections.height)),
                            principal_point(detections.width, detections.height, center),
                            subject, regressor_s)
    else:
        keypoints = Keypoints(detections.parts, detections.width, detections.height, fps=fps,
                              world=detections.pose_world, face_scores=detections.face_scores)
        config = TrackerConfig(focal=focal, center=center, device=device, subject=subject,
                               initial=start)
        if start is not None:
            config.iterations = REFINE_ITERATIONS
        if not contact:
            config.contact = 0.0
        config.smoothness *= smooth
        fit = Tracker(model, config).fit(keypoints, progress=progress)
    with torch.no_grad():
        rest_joints = model(betas=torch.as_tensor(fit.params["betas"])).rest_joints[0].numpy()
    params, cam_t = postprocess(fit.params, fit.cam_t, model.spec, rest_joints, model.joint_names,
                                strength=smooth)
    results = ClipResults(
        asset_id=asset.asset_id, spec_hash=asset.spec_hash, frames=detections.frames,
        times=detections.times, params=params, cam_t=cam_t, focal=fit.focal,
        center=fit.center, width=detections.width, height=detections.height,
        detections=detections.arrays(),
        info={"fps": fps, "estimator": estimator, "detection_rates": detections.rates(),
              "holistic_only_rates": detections.first_pass_rates,
              "reprojection_px": fit.reprojection_px, "fit_s": round(fit.seconds, 2),
              "regressor_s": round(regressor_s, 2), "smooth": smooth, "contact": contact},
        contacts=None if fit.contacts is None else fit.contacts.astype(np.uint8),
    )
    return results, fit


class ClipRecovery:
    """One clip's frames in, in order, and its result out: detection per frame (and the
    regressor, for the estimators that use it), then the estimator over the clip.

    ``person``/``person_box``: which person to follow (``ClipDetector``); ``regressor``: a
    loaded one (``load_regressor``), needed by the regressor estimators, run on
    ``regressor_batch`` frames at a time (None: when told, see ``FrameRegressions``);
    ``focal``, ``center``: the camera's focal length and principal point in pixels, if known;
    ``crop_budget``: the detector's crop pass's limits and ``face_scores`` whether it scores
    the face's blendshapes (``ClipDetector``).
    """

    def __init__(self, width: int, height: int, asset: Asset, estimator: str = "tracker",
                 regressor=None, focal: float | None = None, person: int | None = None,
                 person_box: np.ndarray | None = None,
                 center: tuple[float, float] | None = None, regressor_batch: int | None = 8,
                 crop_budget: CropBudget | None = None, face_scores: bool = True):
        self.asset, self.estimator = asset, check_estimator(estimator)
        self.focal, self.center = focal, center
        # A set-up problem: named before any frame is decoded, not after the detection.
        check_landmark_sets(asset.asset_id, asset.landmarks)
        if uses_regressor(estimator) and regressor is None:
            raise ValueError(f"the {estimator!r} estimator needs a loaded regressor")
        self.regressions = (FrameRegressions(regressor, focal or float(max(width, height)),
                                             principal_point(width, height, center),
                                             batch=regressor_batch)
                            if uses_regressor(estimator) else None)
        self.detector = ClipDetector(width, height, person=person, person_box=person_box,
                                     crop_budget=crop_budget, face_scores=face_scores)

    def __len__(self) -> int:
        return len(self.detector)

    def add(self, frame: Frame) -> FrameLandmarks:
        """The landmarks of the next frame."""
        found = self.detector.add(frame)
        if self.regressions is not None:
            self.regressions.add(len(self.detector) - 1, frame.image, found.box())
        return found

    def finish(self, fps: float, smooth: float = 1.0, device: str | None = None,
               progress: Progress | None = None,
               subject: dict[str, np.ndarray] | None = None, contact: bool = True
               ) -> tuple[ClipResults, FitResult]:
        detections = self.detector.finish()  # releases the detection models
        start = (None if self.regressions is None
                 else self.regressions.finish(len(detections.frames)))
        return recover_clip(detections, fps, self.asset, smooth=smooth, focal=self.focal,
                            center=self.center, device=device, progress=progress,
                            subject=subject, estimator=self.estimator, start=start,
                            contact=contact,
                            regressor_s=0.0 if self.regressions is None
                            else self.regressions.seconds)

    def close(self) -> None:
        self.detector.close()

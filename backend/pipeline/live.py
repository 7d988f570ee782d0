"""A clip recovered as it plays: each frame's body is answered as soon as the frame is
detected (``backend live``, the server's ``live`` sessions), and the whole clip can still be
finished offline afterwards (``ClipRecovery.finish``).

Per frame: MediaPipe Holistic, the regressor on the person's crop for the estimators that use
it, then the online tracker (``backend.tracking.online``) warm-started from the previous frame
or the regressor; the ``regressor`` estimator answers with the network's estimate, filtered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..body.asset import Asset
from ..body.model import BodyModel
from ..camera import principal_point
from ..perception.crops import CropBudget
from ..perception.frames import Frame
from ..perception.holistic import FrameLandmarks
from ..perception.people import PersonNotFound
from ..results import ClipResults
from ..tracking.online import OnlineConfig, OnlineEstimate, OnlineTracker
from ..tracking.tracker import PART_LANDMARKS
from .recovery import ClipRecovery

# The crop pass's limits in live capture: a live frame's detection is the longer of the
# pipeline's two stages. On the bench walk, one region a frame (in turn) cost 63 against
# 79-89 ms, the hands found in 0.57 / 0.73 of frames against 0.60 / 0.79; waiting after
# misses (up to 4 frames) 52-54 against 59-68 ms, 0.59 / 0.63 against 0.61 / 0.67.
LIVE_CROP_BUDGET = CropBudget(regions_per_frame=1, max_wait=4)


@dataclass
class Detected:
    """A frame detected and not yet answered (``LiveRecovery.detect``)."""

    index: int
    time: float
    found: FrameLandmarks
    start: dict[str, np.ndarray] | None  # the regressor's estimate, for the estimators using it


class LiveRecovery(ClipRecovery):
    """``ClipRecovery`` that also answers every frame: ``add`` leaves the frame's estimate in
    ``latest`` (None until a body has been seen); ``answered`` gathers them as a clip.
    ``smooth`` scales the online filter (0: off); ``subject``: per-subject values to hold."""

    def __init__(self, width: int, height: int, asset: Asset, estimator: str = "tracker",
                 regressor=None, fps: float = 30.0, focal: float | None = None,
                 center: tuple[float, float] | None = None, person: int | None = None,
                 person_box: np.ndarray | None = None,
                 subject: dict[str, np.ndarray] | None = None, smooth: float = 1.0,
                 device: str | None = None, crop_budget: CropBudget | None = LIVE_CROP_BUDGET):
        # The regressor runs on each frame as it comes (a batch of one): the answer cannot wait.
        # The online fit does not use the face's blendshape scores (yet): they would cost
        # ~10 ms a frame (docs/tracker.md, "MediaPipe's blendshape scores").
        super().__init__(width, height, asset, estimator=estimator, regressor=regressor,
                         focal=focal, person=person, person_box=person_box, center=center,
                         regressor_batch=1, crop_budget=crop_budget, face_scores=False)
        config = OnlineConfig()
        self.online = OnlineTracker(BodyModel(asset), width, height, fps=fps, focal=focal,
                                    center=center, subject=subject,
                                    config=OnlineConfig(smooth=config.smooth * smooth),
                                    device=device)
        self.fps, self.width, self.height = fps, width, height
        self.latest: OnlineEstimate | None = None
        self._warm = False
        self._answers: list[tuple[int, float, OnlineEstimate, FrameLandmarks]] = []

    def warm_up(self) -> float:
        """Prepare the fit's compiled steps (``OnlineTracker.warm_up``) before the first
        frame, on the torch thread count the frames will be fitted with (compiled code is
        specific to it). Seconds it took (0 once done: the first ``answer`` does it if no one
        did)."""
        if self._warm:
            return 0.0
        self._warm = True
        return self.online.warm_up() if self.estimator != "regressor" else 0.0

    def add(self, frame: Frame) -> FrameLandmarks:
        detected = self.detect(frame)
        self.answer(detected)
        return detected.found

    def detect(self, frame: Frame) -> Detected:
        """The frame's landmarks (and regressor estimate): the first half of ``add``, which a
        pipeline runs on one thread while ``answer`` fits the frame before on another."""
        found = super().add(frame)
        start = None
        if self.regressions is not None:
            estimate = self.regressions.estimate(len(self) - 1)
            start = None if estimate is None else {name: np.asarray(value)[None]
                                                   for name, value in estimate.items()}
        return Detected(frame.index, frame.time, found, start)

    def answer(self, detected: Detected) -> OnlineEstimate | None:
        """The online fit of a detected frame, left in ``latest``: the second half of ``add``.
        Frames must be answered in the order they were detected."""
        self.warm_up()
        found = detected.found
        parts = {part: getattr(found, part) for part in PART_LANDMARKS}
        self.latest = self.online.step(parts, detected.time, found.pose_world, detected.start,
                                       refine=self.estimator != "regressor")
        if self.latest is not None:
            self._answers.append((detected.index, detected.time, self.latest, found))
        return self.latest

    def answered(self) -> ClipResults:
        """Every answer given so far, as a clip (the frames before the first body are not in
        it): what a live rig showed, without the offline fit's second look."""
        if not self._answers:
            raise PersonNotFound(f"nobody was seen in the {len(self)} frame(s) taken, so "
                                 "nothing was recovered; check the person is in view")
        estimates = [estimate for _, _, estimate, _ in self._answers]
        per_subject = {spec.name for spec in self.asset.param_spec if spec.per == "subject"}
        params = {name: (value if name in per_subject
                         else np.concatenate([e.params[name] for e in estimates]))
                  for name, value in estimates[-1].params.items()}
        detections = {part: np.stack([getattr(found, part) for *_, found in self._answers])
                      for part in (*PART_LANDMARKS, "pose_world")}
        return ClipResults(
            asset_id=self.asset.asset_id, spec_hash=self.asset.spec_hash,
            frames=np.array([index for index, *_ in self._answers]),
            times=np.array([time_s for _, time_s, *_ in self._answers]),
            params=params, cam_t=np.concatenate([e.cam_t for e in estimates]),
            focal=self.focal or float(max(self.width, self.height)),
            center=principal_point(self.width, self.height, self.center),
            width=self.width, height=self.height, detections=detections,
            info={"fps": self.fps, "estimator": self.estimator, "live": True,
                  "refits": self.online.refits,
                  "fit_s": round(sum(e.seconds for e in estimates), 2)})

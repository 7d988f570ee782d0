"""The tracker frame by frame, for live capture: each frame is fitted alone, starting from the
previous frame's solution (or the regressor's estimate of it), with a short schedule and the
offline tracker's priors; the body's shape is fixed once the first frames have measured it, and
a one-euro filter takes the jitter out of what a single frame cannot settle.

The offline tracker sees the whole clip at once (its smoothness term couples the frames); here
each frame is answered as it comes, so it can drive a rig live (``backend live``, the server's
``live`` sessions)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..body.model import BodyModel
from ..camera import principal_point, project, to_camera
from ..conventions import KEYPOINT_SEEN
from ..temporal.filters import OneEuroFilter
from .optimizer_memory import OptimizerMemory
from .tracker import PART_LANDMARKS, FitResult, Keypoints, Tracker, TrackerConfig, part_scales

# The first frame starts from the rest pose on a short schedule, so the first answer comes in
# a second or two rather than the offline schedule's ten; the frames after it converge the rest
# of the way within half a second (on a held-out CMU clip: 87 mm at the first frame, 37 mm by
# the 15th; 38.9 mm over 60 frames against 32.5 with the offline schedule first).
FIRST_ITERATIONS = (10, 60, 30)


@dataclass(frozen=True)
class OnlineConfig:
    # Steps per stage (camera and root, body, hands and face) on every later frame: from the
    # previous frame's solution the body has moved a frame's worth.
    iterations: tuple[int, int, int] = (3, 12, 8)
    first_iterations: tuple[int, int, int] = FIRST_ITERATIONS
    # Frames fitted with the body's shape free; then it is held at their mean.
    subject_frames: int = 15
    # A frame whose body points the short schedule leaves further off than this share of the
    # person's height (frames dropped while busy, a fast turn, a cut) is fitted again on the
    # first frame's schedule, onward from the short fit; if that is still further off than
    # ``rest_error``, from rest too (a cut, someone else), and the closer of the two is kept.
    # Not at ``refit_error`` itself: on detections many frames stay a little over it from the
    # detector's noise alone, where a third fit only costs time (1.3 against 1.65 frames/s on
    # ``backend bench live``).
    refit_error: float = 0.03
    rest_error: float = 0.06
    # The one-euro filter's strength (0: off): each 1.0 cost ~5 mm of body PA-MPJPE on a
    # held-out CMU clip (docs/live.md), so a light touch by default.
    smooth: float = 0.3
    # The metric 3D term's weight (``TrackerConfig.world_bones``): a frame fitted alone has no
    # neighbours to settle its limbs' depth, so it leans on the detector's 3D pose more than
    # the offline fit does (on MediaPipe's detections of a rendered walk: 65.7 mm at 1.0,
    # 67.3 at the offline 0.5; docs/live.md).
    world_bones: float = 1.0
    # Each frame's steps continue the optimizer moments of the frame just before it
    # (``optimizer_memory.py``; after a dropped frame they start afresh) and end at this share
    # of the step size they start with, where the offline schedule's hundreds of steps anneal
    # to 0.05: a frame fitted in a dozen steps is still moving at its end. Both by measurement
    # (docs/live.md): on a synthetic clip, 49.2 mm settled with neither, 44.4 with the share
    # alone, 41.1 with both.
    carry_moments: bool = True
    final_lr_fraction: float = 0.5
    # Each step through ``torch.compile`` (``TrackerConfig.compile``): a frame's step is ~500
    # small operations, ~4x faster fused (docs/live.md). Off, or where compiling fails, the
    # same steps run eagerly.
    compile: bool = True


@dataclass
class OnlineEstimate:
    """One frame's answer: every parameter as (1, ...) and ``cam_t`` (1, 3); ``found`` False
    when the frame showed no body (the previous frame's estimate is repeated)."""

    params: dict[str, np.ndarray]
    cam_t: np.ndarray
    found: bool
    seconds: float


class OnlineTracker:
    """Frames in, in order, one estimate out per frame (``step``)."""

    def __init__(self, model: BodyModel, width: int, height: int, fps: float = 30.0,
                 focal: float | None = None, center: tuple[float, float] | None = None,
                 subject: dict[str, np.ndarray] | None = None,
                 config: OnlineConfig = OnlineConfig(), device: str | None = None):
        self.config, self.width, self.height, self.fps = config, width, height, fps
        # No contact stage (it needs a clip) and no smoothness (one frame has no acceleration).
        self._base = TrackerConfig(focal=focal, center=center, device=device, contact=0.0,
                                   subject=subject, world_bones=config.world_bones,
                                   final_lr_fraction=config.final_lr_fraction,
                                   compile=config.compile)
        self._memory: OptimizerMemory | None = None  # the last fit's moments
        self.tracker = Tracker(model, self._base)
        self._per_subject = [name for name, spec in model.spec.items() if spec.per == "subject"]
        self._subject = subject
        self._shapes: list[dict[str, np.ndarray]] = []  # per-subject values of the first frames
        self._last: OnlineEstimate | None = None
        self._raw: dict[str, np.ndarray] | None = None  # the last fit, before the filter
        self._last_time: float | None = None
        self._filter = OneEuroFilter(fps, config.smooth)
        self.frames = 0
        self.refits = 0  # frames fitted again from rest (``OnlineConfig.refit_error``)

    @property
    def subject(self) -> dict[str, np.ndarray] | None:
        """The per-subject values held fixed (None while the first frames measure them)."""
        return self._subject

    def subject_so_far(self) -> dict[str, np.ndarray] | None:
        """The held values, else the mean of those measured so far (None before any fit):
        enough to build a rig to preview on before the shape is held."""
        if self._subject is not None or not self._shapes:
            return self._subject
        return {name: np.mean([s[name] for s in self._shapes], axis=0) for name in self._shapes[0]}

    def step(self, parts: dict[str, np.ndarray], time_s: float,
             world: np.ndarray | None = None, start: dict[str, np.ndarray] | None = None,
             refine: bool = True) -> OnlineEstimate | None:
        """The estimate for the frame at ``time_s`` seconds with detections ``parts`` (part ->
        (K, 3) pixels and confidence) and optionally MediaPipe's metric pose ``world`` (33, 4)
        and a starting estimate ``start`` (the regressor's: name -> (1, ...), ``cam_t``);
        ``refine`` False: ``start`` is the answer, only filtered. None until a frame has
        shown a body."""
        started = time.perf_counter()
        self.frames += 1
        if not _body_seen(parts) or (start is None and not refine):
            if self._last is None:
                return None
            return replace(self._last, found=False, seconds=time.perf_counter() - started)
        if not refine:
            params = {name: value for name, value in start.items() if name != "cam_t"}
            params, cam_t = self._smoothed(params, start["cam_t"], time_s)
            self._last = OnlineEstimate(params, cam_t, True, time.perf_counter() - started)
            return self._last
        # From the last fit itself, not its filtered (lagging) values: the filter's lag would
        # feed back into the next start.
        initial = start if start is not None else self._raw
        keypoints = Keypoints({name: points[None] for name, points in parts.items()},
                              self.width, self.height, fps=self.fps,
                              world=None if world is None else world[None])
        # Moments only from the frame just before: after a gap the last descent points the
        # wrong way (every 2nd frame answered: 32.0 mm carried against 30.5 afresh).
        follows = self._last_time is not None and time_s - self._last_time < 1.5 / self.fps
        memory = self._memory if follows and self._memory is not None else self._new_memory()
        fit = self._fit(keypoints, initial, self.config.iterations if initial is not None
                        else self.config.first_iterations, memory)
        height = part_scales(keypoints.parts, float(self.height))["pose"][0]
        if initial is not None and _pose_px(fit) > self.config.refit_error * height:
            fit, memory = self._refit(keypoints, fit, height)
        self._memory = memory
        self._raw = {**fit.params, "cam_t": fit.cam_t}
        self._learn_subject(fit.params)
        params, cam_t = self._smoothed(fit.params, fit.cam_t, time_s)
        self._last = OnlineEstimate(params, cam_t, True, time.perf_counter() - started)
        return self._last

    def warm_up(self) -> float:
        """Compile the fitting steps (``OnlineConfig.compile``) on a stand-in frame, the rest
        pose 3 m in front of the camera, before the first real frame, so that no frame waits
        for them: with the body's shape free and held, as the first frames and the later ones
        fit it. Minutes the first time on a machine, seconds from the cache after, nothing
        once this process has them. Compiled code is specific to torch's thread count: call
        this under the count the frames will be fitted with. Returns the seconds it took; 0
        when the steps run eagerly."""
        if not self.tracker.compiled:
            return 0.0
        started = time.perf_counter()
        keypoints = _stand_in(self.tracker, self.width, self.height, self._base)
        fit = self._fit(keypoints, None, (1, 1, 1), None)
        if self._subject is None:
            held = {name: fit.params[name] for name in self._per_subject if name in fit.params}
            self.tracker.config = replace(self._base, iterations=(1, 1, 1), subject=held)
            self.tracker.fit(keypoints)
        return time.perf_counter() - started

    def _new_memory(self) -> OptimizerMemory | None:
        return OptimizerMemory() if self.config.carry_moments else None

    def _fit(self, keypoints: Keypoints, initial: dict[str, np.ndarray] | None,
             iterations: tuple[int, int, int], memory: OptimizerMemory | None) -> FitResult:
        self.tracker.config = replace(self._base, initial=initial, iterations=iterations,
                                      subject=self._subject)
        return self.tracker.fit(keypoints, memory=memory)

    def _refit(self, keypoints: Keypoints, fit: FitResult, height: float
               ) -> tuple[FitResult, OptimizerMemory | None]:
        """A frame the short schedule missed (``OnlineConfig.refit_error``): onward from that
        fit, since after dropped frames the body has moved more than a frame's worth but the
        short fit is still nearer than rest; from rest as well if still off. Each with fresh
        moments (a jump is no continuation); returns the fit kept and its moments."""
        self.refits += 1
        onward_memory = self._new_memory()
        onward = self._fit(keypoints, {**fit.params, "cam_t": fit.cam_t},
                           self.config.first_iterations, onward_memory)
        if _pose_px(onward) <= self.config.rest_error * height:
            return onward, onward_memory
        rest_memory = self._new_memory()
        fresh = self._fit(keypoints, None, self.config.first_iterations, rest_memory)
        if _pose_px(fresh) < _pose_px(onward):
            return fresh, rest_memory
        return onward, onward_memory

    def _learn_subject(self, params: dict[str, np.ndarray]) -> None:
        if self._subject is not None:
            return
        self._shapes.append({name: params[name] for name in self._per_subject if name in params})
        if len(self._shapes) >= self.config.subject_frames:
            self._subject = {name: np.mean([s[name] for s in self._shapes], axis=0)
                             for name in self._shapes[0]}

    def _smoothed(self, params: dict[str, np.ndarray], cam_t: np.ndarray, time_s: float
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The one-euro filter over every per-frame value, at the frames' true spacing (frames
        dropped upstream leave gaps)."""
        names = [name for name in params if name not in self._per_subject and name != "transl"]
        flat = np.concatenate([params[name].ravel() for name in names] + [cam_t.ravel()])
        spacing = None if self._last_time is None else max(time_s - self._last_time, 1e-3)
        self._last_time = time_s
        smooth = self._filter(flat, spacing)
        out, at = dict(params), 0
        for name in names:
            size = params[name].size
            out[name] = smooth[at:at + size].reshape(params[name].shape).astype(np.float32)
            at += size
        return out, smooth[at:].reshape(cam_t.shape).astype(np.float32)


def _stand_in(tracker: Tracker, width: int, height: int, config: TrackerConfig) -> Keypoints:
    """Every landmark set of the rest pose 3 m in front of the camera, in pixels, found
    everywhere, and its metric pose: a frame of the shapes a live one has."""
    focal = config.focal or float(max(width, height))
    center = torch.tensor(principal_point(width, height, config.center))
    cam_t = torch.tensor([[0.0, 0.0, 3.0]])
    parts = {}
    for part, name in PART_LANDMARKS.items():
        points = tracker.rest_landmarks[name][None].float()
        pixels = project(to_camera(points, cam_t), focal, center)[0].numpy()
        parts[part] = np.concatenate([pixels, np.ones((len(pixels), 1))], 1)[None]
    pose = tracker.rest_landmarks[PART_LANDMARKS["pose"]].numpy()
    hips = pose[[23, 24]].mean(0)
    world = np.concatenate([pose - hips, np.ones((len(pose), 1))], 1)[None]
    return Keypoints(parts, width, height, world=world)


def _pose_px(fit: FitResult) -> float:
    return fit.reprojection_px.get("pose", 0.0)


def _body_seen(parts: dict[str, np.ndarray]) -> bool:
    """Enough of the body found to place it: a few confident pose points."""
    pose = parts.get("pose")
    return pose is not None and int((pose[:, 2] > KEYPOINT_SEEN).sum()) >= 4

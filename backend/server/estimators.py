"""What the server runs on a session's frames.

An estimator session takes frames one at a time, in order (``add_frame`` returns what a
``frame`` reply carries), and produces the clip's final result on ``finish`` (what
``session.close`` returns). The 3D estimators run the very code ``backend fit`` runs
(``backend.pipeline.recovery``), so a clip sent over the network gives what fitting its file gives.

- ``tracker``, ``regressor``, ``regressor+tracker`` (``estimator_names.ESTIMATORS``): MediaPipe
  Holistic per frame (+ crop pass, + the regressor on the person's crop); on close the
  estimator over the whole clip, elbow-twist fix and smoothing -> the full result
  (docs/results.md), and the subject's rig (``backend.pipeline.rig``) when the session asked for it.
  The regressor ones are unavailable, with the reason, without a checkpoint for the asset.
- ``detector``: the per-frame 2D keypoints alone; on close the clip's detections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..body import registry
from ..body.asset import Asset
from ..body.errors import MissingLandmarkSets
from ..body.params import subject_values
from ..errors import ClipError, SetupError
from ..estimator_names import ESTIMATORS, UnknownEstimator, uses_regressor
from ..paths import adapters_dir
from ..perception.frames import Frame
from ..perception.holistic import ClipDetector, FrameLandmarks
from ..perception.people import PersonNotFound
from ..pipeline.live import Detected, LiveRecovery
from ..pipeline.recovery import (
    ClipRecovery,
    FrameRegressions,
    checkpoint_path,
    load_regressor,
    regressor_problem,
)
from ..pipeline.rig import build_rig, subject_params
from ..regressor.adapter_checkpoint import base_hash, installed_adapters
from ..results import ClipResults, results_to_message
from ..tracking.online import OnlineEstimate
from ..tracking.tracker import check_landmark_sets
from .protocol import ErrorCode, ProtocolError

logger = logging.getLogger("backend.server")

_Found = TypeVar("_Found")


class Cancelled(ClipError):
    """Raised inside a long ``finish`` when its session was cancelled."""


@dataclass
class EstimatorInfo:
    name: str
    available: bool
    description: str
    reason: str = ""  # why it is unavailable

    def to_message(self) -> dict:
        return {"name": self.name, "available": self.available,
                "description": self.description, "reason": self.reason}


class DetectorClip:
    """The ``detector`` estimator's work on one session's clip: per-frame 2D keypoints from
    Holistic and the crop pass."""

    def __init__(self, settings: dict):
        self.settings = settings
        box = settings.get("person_box")
        # Whom to follow, as ClipDetector and ClipRecovery take it.
        self.following = {"person": settings.get("person"),
                          "person_box": None if box is None else np.array(box)}
        self._clip: ClipDetector | ClipRecovery | None = None

    def _start(self, width: int, height: int) -> ClipDetector | ClipRecovery:
        return ClipDetector(width, height, **self.following)

    @property
    def regressions(self) -> FrameRegressions | None:
        """The regressor's queue of this clip's frames (None: no regressor, or no frame yet)."""
        return None

    @property
    def live(self) -> bool:
        """The session answers each frame with its body (``EstimatorClip``'s ``live: true``)."""
        return False

    def add_frame(self, index: int, time: float, image: np.ndarray) -> dict:
        found = _detected(self._clip_for(index, image).add, Frame(index, time, image))
        return detections_message(found)

    def _clip_for(self, index: int, image: np.ndarray) -> ClipDetector | ClipRecovery:
        """The session's clip, started on its first frame; a frame of another size refused."""
        height, width = image.shape[:2]
        if self._clip is None:
            self._clip = self._start(width, height)
            self._size = (width, height)
        elif (width, height) != self._size:
            raise ProtocolError(ErrorCode.BAD_IMAGE, f"frame {index} is {width}x{height} but "
                                f"this session's frames are {self._size[0]}x{self._size[1]}; "
                                "open a new session per clip")
        return self._clip

    def _check_frames(self) -> None:
        if self._clip is None or not len(self._clip):
            raise ProtocolError(ErrorCode.BAD_FIELD, "the session has no frames to finish")

    def finish(self, cancelled: Callable[[], bool]) -> dict:
        self._check_frames()
        detections = self._clip.finish()
        return {"frames": detections.frames, "times": detections.times,
                "width": detections.width, "height": detections.height,
                "detections": detections.arrays(),
                "rates": detections.rates()}

    def close(self) -> None:
        if self._clip is not None:
            self._clip.close()


class EstimatorClip(DetectorClip):
    """An estimator's work on one session's clip: detections (and regressor estimates) per
    frame; the estimator over the clip on close."""

    def __init__(self, settings: dict, asset: Asset, device: str, regressor=None):
        super().__init__(settings)
        self.asset, self.device, self.regressor = asset, device, regressor
        try:  # checked now: a wrong subject is the opener's mistake, not a failed fit later
            self.subject = subject_values(asset.param_spec, settings.get("subject") or {})
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"asset {asset.asset_id!r}: {exc}") from None

    def _start(self, width: int, height: int) -> ClipRecovery:
        intrinsics = self.settings.get("intrinsics") or {}
        # The principal point: the given cx, cy (either may be left out: the image centre's).
        center = None
        if "cx" in intrinsics or "cy" in intrinsics:
            center = (intrinsics.get("cx", width / 2), intrinsics.get("cy", height / 2))
        if self.settings.get("live"):
            live = LiveRecovery(width, height, self.asset, estimator=self.settings["estimator"],
                                regressor=self.regressor, fps=self.settings["fps"],
                                focal=intrinsics.get("focal"), center=center,
                                subject=self.subject or None, smooth=self.settings["smooth"],
                                device=self.device, **self.following)
            return live
        # regressor_batch None: the server runs the regressor over several sessions' frames
        # at once (run_regressor_batches).
        return ClipRecovery(width, height, self.asset, estimator=self.settings["estimator"],
                            regressor=self.regressor, focal=intrinsics.get("focal"),
                            center=center, regressor_batch=None, **self.following)

    @property
    def live(self) -> bool:
        return bool(self.settings.get("live"))

    def add_frame(self, index: int, time: float, image: np.ndarray) -> dict:
        if not self.live:
            return super().add_frame(index, time, image)
        reply, detected = self.detect_frame(index, time, image)
        return {**reply, **self.answer_frame(detected)}

    def detect_frame(self, index: int, time: float, image: np.ndarray
                     ) -> tuple[dict, Detected]:
        """A live frame's first half: the frame reply's detections, and the frame as
        ``answer_frame`` takes it. The server runs the halves on two threads, so that one
        frame is detected while the one before is fitted."""
        clip = self._clip_for(index, image)
        detected = _detected(clip.detect, Frame(index, time, image))
        return detections_message(detected.found), detected

    def answer_frame(self, detected: Detected) -> dict:
        """A live frame's second half, its body (the reply's ``live``); frames in the order
        they were detected. The first prepares the compiled fit on the calling thread's torch
        thread count (``LiveRecovery.warm_up``)."""
        return {"live": live_message(self._clip.answer(detected))}

    def live_rig(self) -> dict | None:
        """A live clip's rig, shaped by the body measured so far (None before the first
        body was fitted)."""
        clip = self._clip
        subject = (None if clip is None or not self.settings.get("live")
                   else clip.online.subject_so_far())
        return None if subject is None else build_rig(self.asset, subject)

    def answered(self) -> ClipResults | None:
        """A live clip's answers so far as a clip (None: none yet, or not live)."""
        clip = self._clip
        if not self.settings.get("live") or clip is None or clip.latest is None:
            return None
        return clip.answered()

    @property
    def regressions(self) -> FrameRegressions | None:
        return None if self._clip is None else self._clip.regressions

    def finish(self, cancelled: Callable[[], bool]) -> dict:
        self._check_frames()

        def check(label: str, step: int, steps: int) -> None:
            if cancelled():
                raise Cancelled(f"cancelled while fitting ({label} {step}/{steps})")

        try:
            results, _ = self._clip.finish(self.settings["fps"], smooth=self.settings["smooth"],
                                           device=self.device, progress=check,
                                           subject=self.subject or None)
        except PersonNotFound as exc:
            raise ProtocolError(ErrorCode.PERSON_NOT_FOUND, str(exc)) from None
        subject = subject_params(self.asset, results.params)
        # A later session of the same person sends it back as its 'subject' to keep this body.
        reply = {"results": results_to_message(results),
                 "subject": {name: value.ravel().tolist() for name, value in subject.items()}}
        if self.settings.get("rig"):
            reply["rig"] = build_rig(self.asset, subject)
        return reply


def _detected(detect: Callable[[Frame], _Found], frame: Frame) -> _Found:
    """``detect(frame)``, nobody to follow reported as the protocol's error."""
    try:
        return detect(frame)
    except PersonNotFound as exc:
        raise ProtocolError(ErrorCode.PERSON_NOT_FOUND, str(exc)) from None


def detections_message(found: FrameLandmarks) -> dict:
    """A frame reply's ``detections``: each part's points (and the face's scores when taken),
    and the person's box, so that a later session of the same footage can follow them on."""
    detections = {part: points.astype(np.float32) for part, points in found._asdict().items()
                  if points is not None}
    return {"detections": {**detections, "box": found.box().astype(np.float32)}}


def live_message(estimate: OnlineEstimate | None) -> dict | None:
    """A live frame reply's ``live``: the frame's parameters (name -> (1, ...)), ``cam_t``
    (1, 3), ``found`` (False: nobody in this frame, the last body repeated) and ``fit_ms``;
    None until a body has been seen."""
    if estimate is None:
        return None
    return {"params": {name: value.astype(np.float32) for name, value in estimate.params.items()},
            "cam_t": estimate.cam_t.astype(np.float32), "found": estimate.found,
            "fit_ms": round(1000 * estimate.seconds, 1)}


def run_regressor_batches(clips: Iterable[DetectorClip]) -> tuple[list[int],
                                                                  dict[DetectorClip, str]]:
    """The frames these sessions' clips have queued for the regressor, run as one batched
    forward per regressor (one per body model) whichever session they came from. Returns the
    batch sizes run, and for the clips whose batch failed why (those frames have no estimate:
    the clip takes its neighbours')."""
    groups: dict[int, dict[int, tuple[DetectorClip, FrameRegressions]]] = {}
    for clip in clips:
        regressions = clip.regressions
        if regressions is not None and regressions.queued:
            groups.setdefault(id(regressions.regressor), {})[id(regressions)] = (clip, regressions)
    sizes, failed = [], {}
    for group in groups.values():
        try:
            sizes.append(FrameRegressions.run_together([r for _, r in group.values()]))
        except Exception as exc:  # reported per frame; the server keeps serving
            logger.exception("the regressor failed")
            failed.update({clip: f"the regressor failed: {type(exc).__name__}: {exc}"
                           for clip, _ in group.values()})
    return sizes, failed


def _needs_regressor(name: str) -> bool:
    return name != "detector" and uses_regressor(name)


class Estimators:
    """The estimators this server offers, the body assets they use and the regressor
    checkpoints (``checkpoint``: one folder for every asset; default: each asset's own in
    ``$PEAR_HOME/checkpoints``; ``compile_regressor``: through ``torch.compile``;
    ``adapter``: an adapter on it) and the avatar ops' renderer."""

    DESCRIPTIONS = {**ESTIMATORS,
                    "detector": "MediaPipe Holistic 2D keypoints only (no 3D body)"}

    def __init__(self, device: str, names: list[str] | None = None,
                 progress: Callable[[str], None] = print, checkpoint: str | None = None,
                 compile_regressor: bool = False, renderer: str | None = None,
                 adapter: str | None = None):
        from .avatars import AvatarMaker

        self.device = device
        self.names = list(names or self.DESCRIPTIONS)
        unknown = sorted(set(self.names) - set(self.DESCRIPTIONS))
        if unknown:
            raise UnknownEstimator(f"unknown estimator(s) {unknown}; choose from "
                                   f"{list(self.DESCRIPTIONS)}")
        self.checkpoint, self.compile_regressor = checkpoint, compile_regressor
        self.adapter = adapter  # on the regressor of every asset (``pear-train adapt``)
        self._assets: dict[str, Asset] = {}
        self._regressors: dict[str, object] = {}
        self._progress = progress
        # The avatar ops' renderer (``renderer``: one checkpoint folder for every asset).
        self.avatars = AvatarMaker(self.asset, device, renderer)
        default = self.asset(registry.DEFAULT_ASSET_ID)  # built on first use: better now
        # session.open runs on the I/O thread: load the regressor now, not while others wait.
        if any(map(_needs_regressor, self.names)) and not self._unavailable("regressor", default):
            self._regressor(default)

    def _unavailable(self, name: str, asset: Asset) -> str:
        """Why ``name`` cannot run on ``asset`` here ("" if it can)."""
        if name == "detector":  # 2D keypoints only: no body model involved
            return ""
        try:
            check_landmark_sets(asset.asset_id, asset.landmarks)
        except MissingLandmarkSets as exc:
            return str(exc)
        if not _needs_regressor(name):
            return ""
        return regressor_problem(asset, self.checkpoint) or ""

    def describe(self) -> list[dict]:
        """Each estimator, available or not (with why not) for the default body model."""
        asset = self.asset(registry.DEFAULT_ASSET_ID)
        out = []
        for name in self.names:
            reason = self._unavailable(name, asset)
            out.append(EstimatorInfo(name, not reason, self.DESCRIPTIONS[name],
                                     reason).to_message())
        return out

    def asset(self, asset_id: str) -> Asset:
        if asset_id not in self._assets:
            try:
                self._assets[asset_id] = registry.load(asset_id, progress=self._progress)
            except SetupError as exc:  # not installed, or its file is broken
                raise ProtocolError(ErrorCode.UNAVAILABLE, str(exc)) from None
        return self._assets[asset_id]

    def assets(self) -> tuple[dict[str, dict], list[dict]]:
        """What ``hello`` tells about the installed assets: each readable one's parameter spec
        and names, and each unreadable one's id and why (a broken file hides no other)."""
        out, unreadable = {}, []
        for asset_id in sorted(set(registry.installed_ids()) | set(self._assets)):
            try:
                asset = self.asset(asset_id)
            except ProtocolError as exc:
                unreadable.append({"id": asset_id, "reason": exc.message})
                continue
            out[asset_id] = {"spec_hash": asset.spec_hash, "kind": asset.meta["kind"],
                             "params": [p.to_json() for p in asset.param_spec],
                             "joint_names": asset.joint_names,
                             "expression_names": asset.meta.get("expression_names", [])}
        return out, unreadable

    def _regressor(self, asset: Asset, adapter: str | None = None):
        """The regressor for ``asset``, with the installed adapter named ``adapter`` on it
        (else the server's own ``adapter``, if any); each loaded once."""
        path = adapters_dir() / adapter if adapter else self.adapter
        key = (asset.asset_id, str(path) if path else None)
        if key not in self._regressors:
            self._regressors[key] = load_regressor(
                asset, self.checkpoint, device=self.device, compile=self.compile_regressor,
                adapter=path)
        return self._regressors[key]

    def adapters(self) -> list[dict]:
        """The adapters installed here (``$PEAR_HOME/adapters``, one folder each), each with
        its body model and whether it fits this server's regressor for it (and why not)."""
        listed = []
        for name, found in installed_adapters(adapters_dir()).items():
            reason = found.get("problem") or self._adapter_problem(found)
            listed.append({"name": name, "asset": found.get("asset_id"), "usable": not reason,
                           "reason": reason})
        return listed

    def _adapter_problem(self, found: dict) -> str:
        folder = checkpoint_path(found["asset_id"], self.checkpoint)
        try:
            fits = base_hash(folder) == found["base_hash"]
        except OSError:
            return f"this server has no regressor checkpoint for body model {found['asset_id']!r}"
        return "" if fits else "trained on another base checkpoint than this server's"

    def open(self, settings: dict) -> DetectorClip:
        name = settings["estimator"]
        if name not in self.names:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"estimator {name!r} is not available "
                                f"here; this server offers {self.names}")
        if name == "detector":
            return DetectorClip(settings)
        asset = self.asset(settings["asset"])
        reason = self._unavailable(name, asset)
        if reason:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"estimator {name!r} is unavailable for "
                                f"body model {asset.asset_id!r}: {reason}")
        adapter = settings.get("adapter")
        if adapter is not None:
            self._check_adapter(adapter, name, asset)
        regressor = self._regressor(asset, adapter) if _needs_regressor(name) else None
        return EstimatorClip(settings, asset, self.device, regressor)

    def _check_adapter(self, adapter: str, estimator: str, asset: Asset) -> None:
        if not _needs_regressor(estimator):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'adapter' adapts the regressor: open the "
                                f"session with a regressor estimator, not {estimator!r}")
        listed = {entry["name"]: entry for entry in self.adapters()}
        entry = listed.get(adapter)
        reason = ("no such adapter here" if entry is None else entry["reason"]
                  or ("" if entry["asset"] == asset.asset_id
                      else f"it adapts body model {entry['asset']!r}"))
        if reason:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"adapter {adapter!r} cannot be used: "
                                f"{reason} (hello lists {sorted(listed)})")

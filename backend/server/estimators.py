"""What the server runs on a session's frames.

An estimator session takes frames one at a time, in order (``add_frame`` returns what a
``frame`` reply carries), and produces the clip's final result on ``finish`` (what
``session.close`` returns). Both estimators here end in the same functions ``backend fit``
uses, so a clip sent over the network gives what fitting its file gives.

- ``tracker``: MediaPipe Holistic per frame (+ crop pass); on close the EHM tracker over the
  whole clip, elbow-twist fix and smoothing -> the full result (docs/results.md), and the
  subject's rig (``backend.rig``) when the session asked for it.
- ``detector``: the per-frame 2D keypoints alone; on close the clip's detections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..body import registry
from ..body.asset import Asset
from ..body.errors import AssetNotFoundError
from ..body.params import subject_values
from ..fit import recover_clip
from ..perception.frames import Frame
from ..perception.holistic import ClipDetector, person_box
from ..perception.people import PersonNotFound
from ..results import results_to_message
from ..rig import build_rig, subject_params
from .protocol import ErrorCode, ProtocolError

PARTS = ("pose", "face", "left_hand", "right_hand")


class Cancelled(Exception):
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


class DetectorSession:
    """Per-frame 2D keypoints from Holistic and the crop pass."""

    def __init__(self, settings: dict):
        self.settings = settings
        self._detector: ClipDetector | None = None

    def add_frame(self, index: int, time: float, image: np.ndarray) -> dict:
        height, width = image.shape[:2]
        if self._detector is None:
            box = self.settings.get("person_box")
            self._detector = ClipDetector(width, height, person=self.settings.get("person"),
                                          person_box=None if box is None else np.array(box))
        elif (width, height) != (self._detector.width, self._detector.height):
            raise ProtocolError(ErrorCode.BAD_IMAGE, f"frame {index} is {width}x{height} but "
                                f"this session's frames are {self._detector.width}x"
                                f"{self._detector.height}; open a new session per clip")
        try:
            found = self._detector.add(Frame(index, time, image))
        except PersonNotFound as exc:
            raise ProtocolError(ErrorCode.PERSON_NOT_FOUND, str(exc)) from None
        detections = dict(zip(PARTS, (p.astype(np.float32) for p in found), strict=True))
        # The person's box, so a later session of the same footage can follow them on.
        return {"detections": {**detections, "box": person_box(*found).astype(np.float32)}}

    def _detections(self):
        if self._detector is None or not len(self._detector):
            raise ProtocolError(ErrorCode.BAD_FIELD, "the session has no frames to finish")
        return self._detector.finish()

    def finish(self, cancelled: Callable[[], bool]) -> dict:
        detections = self._detections()
        return {"frames": detections.frames, "times": detections.times,
                "width": detections.width, "height": detections.height,
                "detections": {**detections.parts, "boxes": detections.boxes},
                "rates": detections.rates()}

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()


class TrackerSession(DetectorSession):
    """Detections per frame; the tracker over the whole clip on close."""

    def __init__(self, settings: dict, asset: Asset, device: str):
        super().__init__(settings)
        self.asset = asset
        self.device = device
        try:  # checked now: a wrong subject is the opener's mistake, not a failed fit later
            self.subject = subject_values(asset.param_spec, settings.get("subject") or {})
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"asset {asset.asset_id!r}: {exc}") from None

    def finish(self, cancelled: Callable[[], bool]) -> dict:
        detections = self._detections()

        def check(label: str, step: int, steps: int) -> None:
            if cancelled():
                raise Cancelled(f"cancelled while fitting ({label} {step}/{steps})")

        intrinsics = self.settings.get("intrinsics") or {}
        results, _ = recover_clip(detections, self.settings["fps"], self.asset,
                                  smooth=self.settings["smooth"], focal=intrinsics.get("focal"),
                                  device=self.device, progress=check,
                                  subject=self.subject or None)
        subject = subject_params(self.asset, results.params)
        # A later session of the same person sends it back as its 'subject' to keep this body.
        reply = {"results": results_to_message(results),
                 "subject": {name: value.ravel().tolist() for name, value in subject.items()}}
        if self.settings.get("rig"):
            reply["rig"] = build_rig(self.asset, subject)
        return reply


class Estimators:
    """The estimators this server offers and the body assets they use."""

    DESCRIPTIONS = {
        "tracker": "MediaPipe Holistic per frame, then the EHM tracker over the clip on close",
        "detector": "MediaPipe Holistic 2D keypoints only (no 3D body)",
    }

    def __init__(self, device: str, names: list[str] | None = None,
                 progress: Callable[[str], None] = print):
        self.device = device
        self.names = list(names or self.DESCRIPTIONS)
        unknown = sorted(set(self.names) - set(self.DESCRIPTIONS))
        if unknown:
            raise ValueError(f"unknown estimator(s) {unknown}; known: {list(self.DESCRIPTIONS)}")
        self._assets: dict[str, Asset] = {}
        self._progress = progress
        self.asset(registry.DEFAULT_ASSET_ID)  # built on first use; better now than mid-session

    def describe(self) -> list[dict]:
        return [EstimatorInfo(name, True, self.DESCRIPTIONS[name]).to_message()
                for name in self.names]

    def asset(self, asset_id: str) -> Asset:
        if asset_id not in self._assets:
            try:
                self._assets[asset_id] = registry.load(asset_id, progress=self._progress)
            except AssetNotFoundError as exc:
                raise ProtocolError(ErrorCode.UNAVAILABLE, str(exc)) from None
        return self._assets[asset_id]

    def assets(self) -> dict[str, dict]:
        """What ``hello`` tells about each installed asset: its parameter spec and names."""
        out = {}
        for asset_id in sorted(set(registry.installed_ids()) | set(self._assets)):
            try:
                asset = self.asset(asset_id)
            except ProtocolError:
                continue
            out[asset_id] = {"spec_hash": asset.spec_hash, "kind": asset.meta["kind"],
                             "params": [p.to_json() for p in asset.param_spec],
                             "joint_names": asset.joint_names,
                             "expression_names": asset.meta.get("expression_names", [])}
        return out

    def open(self, settings: dict) -> DetectorSession:
        name = settings["estimator"]
        if name not in self.names:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"estimator {name!r} is not available "
                                f"here; this server offers {self.names}")
        if name == "detector":
            return DetectorSession(settings)
        return TrackerSession(settings, self.asset(settings["asset"]), self.device)

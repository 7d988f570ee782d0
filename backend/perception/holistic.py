"""MediaPipe Holistic over a clip: 33 pose, 478 face and 21 + 21 hand landmarks per frame, in
pixels, with the hands assigned to the person's left and right, a person box, and BlazePose's
metric 3D pose (``pose_world``).

Only ``model_complexity=1`` works offline (its models ship in the mediapipe 0.10.21 wheel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..conventions import FACE_BLENDSHAPES, KEYPOINT_CONFIDENT, KEYPOINT_SEEN
from ..errors import FootageError
from .crops import CropBudget
from .face_mesh import QuietSolution, import_mediapipe
from .face_scores import FaceScorer, optional_scorer
from .frames import Frame
from .people import PersonFollower

POSE, FACE, HAND = 33, 478, 21
# BlazePose indices of the person's wrists.
POSE_LEFT_WRIST, POSE_RIGHT_WRIST = 15, 16
# The same five face points in BlazePose's 33 and Face Mesh's 478: nose tip, the eyes (iris
# centres), the mouth corners, each on the person's left then right.
POSE_FACE_POINTS = [0, 2, 5, 9, 10]
MESH_FACE_POINTS = [4, 473, 468, 291, 61]
# A face mesh whose points lie further than this times its own size (box diagonal) from
# BlazePose's is another face or none (measured on COCO-WholeBody people: a mesh on the right
# face lies within 0.1-0.35, one on a neighbour's face or a hat 0.65-1.0; docs/tracker.md).
FACE_MESH_MAX_OFFSET = 0.5
# BlazePose's shoulders and hips: (left, right) each.
POSE_SHOULDERS, POSE_HIPS = [11, 12], [23, 24]
# A hand whose wrist lies further than this times the torso (shoulders' to hips' midpoint) from
# the pose's wrist on its side is not that arm's: on real footage a hand on its own wrist lies
# within 0.3, a hidden hand given the visible one's landmarks 0.6, a crop's hand on a
# neighbour's arm 0.75 (docs/tracker.md).
HAND_MAX_OFFSET = 0.45


IMAGE_PARTS = ("pose", "face", "left_hand", "right_hand")


class FrameLandmarks(NamedTuple):
    """One frame's landmarks: the image parts as (K, 3) arrays of (u, v, confidence) in pixels
    (confidence 0 = not found), and ``pose_world``, BlazePose's metric 3D pose as (33, 4):
    x, y, z in metres about the hips' midpoint, in the camera's axes as the person's crop
    sees them (x right, y down, z away), and the point's visibility; ``face_scores``: the
    face's blendshape scores (``face_scores.py``), None when they were not taken."""

    pose: np.ndarray
    face: np.ndarray
    left_hand: np.ndarray
    right_hand: np.ndarray
    pose_world: np.ndarray
    face_scores: np.ndarray | None = None

    @property
    def image_parts(self) -> tuple[np.ndarray, ...]:
        """(pose, face, left hand, right hand)."""
        return self.pose, self.face, self.left_hand, self.right_hand

    def box(self) -> np.ndarray:
        """The person's box (``person_box``) around the image parts."""
        return person_box(*self.image_parts)


@dataclass
class ClipDetections:
    """Per-frame landmarks: the image parts as (T, K, 3) arrays of (u, v, confidence),
    confidence 0 = not found, the metric 3D pose as (T, 33, 4) and, when they were taken, the
    face's blendshape scores as (T, 52), NaN in frames not scored (``FrameLandmarks``)."""

    frames: np.ndarray  # (T,) footage frame indices
    times: np.ndarray  # (T,) seconds
    pose: np.ndarray
    face: np.ndarray
    left_hand: np.ndarray  # the person's left hand
    right_hand: np.ndarray
    pose_world: np.ndarray
    boxes: np.ndarray  # (T, 4) x0, y0, x1, y1 of the person; NaN when nobody was found
    width: int
    height: int
    first_pass_rates: dict[str, float] | None = None  # before the crop pass, for reporting
    face_scores: np.ndarray | None = None

    @property
    def parts(self) -> dict[str, np.ndarray]:
        """image part name -> (T, K, 3), for the tracker and the result file."""
        return {part: getattr(self, part) for part in IMAGE_PARTS}

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything per frame for a result file's ``det/``: the image parts, the metric 3D
        pose, the boxes and the face's scores when taken."""
        scores = {} if self.face_scores is None else {"face_scores": self.face_scores}
        return {**self.parts, "pose_world": self.pose_world, "boxes": self.boxes, **scores}

    def rates(self) -> dict[str, float]:
        """Fraction of frames in which each part was found."""
        return {part: float((points[:, :, 2] > 0).any(1).mean())
                for part, points in self.parts.items()}


def _world_points(landmarks) -> np.ndarray:
    out = np.zeros((POSE, 4))
    if landmarks is None:
        return out
    for k, point in enumerate(landmarks.landmark[:POSE]):
        out[k] = (point.x, point.y, point.z, point.visibility)
    return out


def _points(landmarks, count: int, width: int, height: int, use_visibility: bool) -> np.ndarray:
    out = np.zeros((count, 3))
    if landmarks is None:
        return out
    for k, point in enumerate(landmarks.landmark[:count]):
        confidence = point.visibility if use_visibility else 1.0
        out[k] = (point.x * width, point.y * height, confidence)
    return out


def assign_hands(pose: np.ndarray, first: np.ndarray, second: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Give each detected hand to the person's side whose pose wrist it is nearest.

    ``first``/``second`` are the detector's (left, right) guesses; the pose wrists decide, since
    detector hand labels flip with mirroring conventions. Without a usable pose wrist, the
    detector's own labels stand.
    """
    wrists = pose[[POSE_LEFT_WRIST, POSE_RIGHT_WRIST]]
    if (wrists[:, 2] < 0.1).any():
        return first, second
    hands = [h for h in (first, second) if h[:, 2].any()]
    if not hands:
        return first, second
    distance = np.array([[np.linalg.norm(h[0, :2] - w[:2]) for w in wrists] for h in hands])
    left, right = np.zeros_like(first), np.zeros_like(first)
    if len(hands) == 2 and distance[0, 0] + distance[1, 1] > distance[0, 1] + distance[1, 0]:
        hands = hands[::-1]
    if len(hands) == 2:
        left, right = hands
    elif distance[0, 0] <= distance[0, 1]:
        left = hands[0]
    else:
        right = hands[0]
    return left, right


def face_agrees_with_pose(pose: np.ndarray, face: np.ndarray) -> bool:
    """Whether a found face mesh is the face of the person the pose is on.

    Holistic's face model can settle on a neighbour's face or a patterned hat, and the fit
    would then put the head there. BlazePose's face points are rough (tens of pixels on a
    close-up) but on the right person, so they vote; with fewer than three seen, the mesh
    stands.
    """
    seen = pose[POSE_FACE_POINTS, 2] > KEYPOINT_SEEN
    if seen.sum() < 3:
        return True
    offsets = pose[POSE_FACE_POINTS, :2][seen] - face[MESH_FACE_POINTS, :2][seen]
    size = float(np.linalg.norm(np.ptp(face[:, :2], axis=0)))
    return float(np.median(np.linalg.norm(offsets, axis=1))) <= FACE_MESH_MAX_OFFSET * size


def hand_agrees_with_pose(pose: np.ndarray, hand: np.ndarray, side: str) -> bool:
    """Whether a found hand (``side``: "left" or "right") is on the arm the pose has there.

    Holistic can give a hand hidden behind the body the visible hand's landmarks, and a crop
    around a person can find a neighbour's hand; the fit would then pull the arm there. With
    the wrist, the shoulders or the hips unseen there is nothing to compare, and the hand
    stands.
    """
    wrist = pose[POSE_LEFT_WRIST if side == "left" else POSE_RIGHT_WRIST]
    torso = pose[POSE_SHOULDERS + POSE_HIPS]
    if wrist[2] <= KEYPOINT_SEEN or (torso[:, 2] <= KEYPOINT_SEEN).any():
        return True
    length = np.linalg.norm(torso[:2, :2].mean(0) - torso[2:, :2].mean(0))
    return float(np.linalg.norm(hand[0, :2] - wrist[:2])) <= HAND_MAX_OFFSET * length


def own_parts(pose: np.ndarray, face: np.ndarray, left: np.ndarray, right: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face, left hand, right hand), each as found or, where it is not the pose's own
    (``face_agrees_with_pose``, ``hand_agrees_with_pose``), as not found."""
    face = face if not face[:, 2].any() or face_agrees_with_pose(pose, face) else \
        np.zeros_like(face)
    left, right = (hand if not hand[:, 2].any() or hand_agrees_with_pose(pose, hand, side)
                   else np.zeros_like(hand) for hand, side in ((left, "left"), (right, "right")))
    return face, left, right


def person_box(*parts: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Box around every found landmark, grown by ``margin`` of its size; NaN if none."""
    points = np.concatenate([p[p[:, 2] > KEYPOINT_SEEN, :2] for p in parts])
    if len(points) == 0:
        return np.full(4, np.nan)
    low, high = points.min(0), points.max(0)
    pad = margin * (high - low).max()
    return np.concatenate([low - pad, high + pad])


class Holistic:
    """Video-mode Holistic (tracking between frames); one instance per clip. With ``crops``,
    a face or hand Holistic misses gets second tries on upscaled crops (``crops.py``), first
    around where it was in the frame before; ``crop_budget``: the crop pass's limits for live
    capture (``CropBudget``; None: every region, every frame). ``face_scores``: also score
    the found face's blendshapes (``face_scores.py``) when that model is installed."""

    def __init__(self, static: bool = False, crops: bool = True,
                 crop_budget: CropBudget | None = None, face_scores: bool = False):
        mp = import_mediapipe()
        self._model = QuietSolution(lambda: mp.solutions.holistic.Holistic(
            static_image_mode=static, model_complexity=1, smooth_landmarks=not static,
            refine_face_landmarks=True, enable_segmentation=False))
        self._crops = None
        if crops:
            from .crops import CropDetector

            self._crops = CropDetector(crop_budget)
        self.first_pass_found = {part: 0 for part in ("face", "left_hand", "right_hand")}
        self._static = static
        self._last_found: dict[str, np.ndarray] = {}
        self._scorer: FaceScorer | None = optional_scorer() if face_scores else None

    def detect(self, image: np.ndarray) -> FrameLandmarks:
        """The landmarks of one RGB image."""
        height, width = image.shape[:2]
        result = self._model.process(np.ascontiguousarray(image))
        pose = _points(result.pose_landmarks, POSE, width, height, use_visibility=True)
        world = _world_points(result.pose_world_landmarks)
        face = _points(result.face_landmarks, FACE, width, height, use_visibility=False)
        first = _points(result.left_hand_landmarks, HAND, width, height, use_visibility=False)
        second = _points(result.right_hand_landmarks, HAND, width, height, use_visibility=False)
        left, right = assign_hands(pose, first, second)
        # A part on someone else (or the other hand's double) is not found: the crop pass
        # below looks again.
        face, left, right = own_parts(pose, face, left, right)
        for part, points in (("face", face), ("left_hand", left), ("right_hand", right)):
            self.first_pass_found[part] += bool(points[:, 2].any())
        if self._crops is not None and pose[:, 2].max() > KEYPOINT_CONFIDENT:
            last = self._last_found
            if not face[:, 2].any():
                face = _with_confidence(self._crops.face(image, pose, last.get("face")),
                                        FACE, face)
            if not left[:, 2].any():
                left = _with_confidence(self._crops.hand(image, pose, "left",
                                                         last.get("left_hand")), HAND, left)
            if not right[:, 2].any():
                right = _with_confidence(self._crops.hand(image, pose, "right",
                                                          last.get("right_hand")), HAND, right)
            # A crop around one wrist can find the other hand, which lies near it.
            left, right = assign_hands(pose, left, right)
            face, left, right = own_parts(pose, face, left, right)
        # Where each part was found, for the next frame's second chance (video mode only).
        self._last_found = {} if self._static else {
            part: points[:, :2] for part, points in (("face", face), ("left_hand", left),
                                                     ("right_hand", right))
            if points[:, 2].any()}
        scores = None if self._scorer is None else self._scorer(image, face)
        return FrameLandmarks(pose, face, left, right, world, scores)

    def close(self) -> None:
        """Release the models; closing twice is harmless."""
        if self._model is None:
            return
        self._model.close()
        self._model = None
        if self._crops is not None:
            self._crops.close()
        if self._scorer is not None:
            self._scorer.close()

    def __enter__(self) -> Holistic:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _with_confidence(points: np.ndarray | None, count: int, missing: np.ndarray) -> np.ndarray:
    if points is None:
        return missing
    out = np.ones((count, 3))
    out[:, :2] = points[:count]
    return out


def nothing_found() -> FrameLandmarks:
    """The landmarks of a frame where nobody was found."""
    return FrameLandmarks(*(np.zeros((count, 3)) for count in (POSE, FACE, HAND, HAND)),
                          np.zeros((POSE, 4)))


class PersonFinder:
    """The box of the person Holistic finds most prominent in an image, in static mode (for
    ``people.find_people``); the model loads on first use."""

    def __init__(self):
        self._holistic: Holistic | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._holistic is None:
            self._holistic = Holistic(static=True, crops=False)
        return self._holistic.detect(image).box()

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


class ClipDetector:
    """Holistic (and the crop pass) over a clip's frames as they come, in order: the same
    detections whether the frames come from a file (``detect_clip``) or over the network.

    ``person``: follow the person with this number (1 = leftmost in the first frame showing
    anybody; ``people.py``); or ``person_box``: the one at this box (x0, y0, x1, y1) in the
    first frame; neither lets Holistic pick the most prominent one. ``crop_budget``: the
    crop pass's limits, ``face_scores``: score the face's blendshapes (``Holistic``).
    """

    def __init__(self, width: int, height: int, crops: bool = True, person: int | None = None,
                 person_box: np.ndarray | None = None, crop_budget: CropBudget | None = None,
                 face_scores: bool = True):
        self.width, self.height = width, height
        self._finder = self.follower = None
        if person is not None or person_box is not None:
            self._finder = PersonFinder()
            self.follower = PersonFollower(self._finder, person=person, box=person_box)
        self._holistic = Holistic(crops=crops, crop_budget=crop_budget, face_scores=face_scores)
        self._indices: list[int] = []
        self._times: list[float] = []
        self._found: list[FrameLandmarks] = []

    def __len__(self) -> int:
        return len(self._indices)

    def add(self, frame: Frame) -> FrameLandmarks:
        """The landmarks of the next frame; raises ``people.PersonNotFound`` when the chosen
        person is not in the footage."""
        image = frame.image
        if self.follower is not None:
            image = self.follower.view(frame.index, image)
            if not self.follower.choosing and self._finder is not None:
                self._finder.close()  # the choice is made; following needs no finder
                self._finder = None
        found = nothing_found() if image is None else self._holistic.detect(image)
        if self.follower is not None:
            self.follower.update(found.box())
        self._found.append(found)
        self._indices.append(frame.index)
        self._times.append(frame.time)
        return found

    def finish(self) -> ClipDetections:
        """Everything detected so far; releases the models."""
        self.close()
        if not self._found:
            raise FootageError("no frame of the footage could be decoded, so there is nothing "
                               "to fit: check that it plays in a video player, or re-export it")
        count = len(self._found)
        first_pass = {part: found / count
                      for part, found in self._holistic.first_pass_found.items()}
        stacked = (np.stack(p) for p in zip(*((*found.image_parts, found.pose_world)
                                                for found in self._found), strict=True))
        boxes = np.stack([found.box() for found in self._found])
        return ClipDetections(np.array(self._indices), np.array(self._times, dtype=float),
                              *stacked, boxes, self.width, self.height, first_pass,
                              _stacked_scores(self._found))

    def close(self) -> None:
        self._holistic.close()
        if self._finder is not None:
            self._finder.close()
            self._finder = None


def _stacked_scores(found: list[FrameLandmarks]) -> np.ndarray | None:
    """(T, 52) the frames' face scores, NaN where a frame has none; None if none has any."""
    if all(frame.face_scores is None for frame in found):
        return None
    unscored = np.full(len(FACE_BLENDSHAPES), np.nan)
    return np.stack([unscored if frame.face_scores is None else frame.face_scores
                     for frame in found])


def detect_clip(frames: Iterable[Frame], width: int, height: int,
                progress: Callable[[int], None] | None = None, crops: bool = True,
                person: int | None = None, person_box: np.ndarray | None = None
                ) -> ClipDetections:
    """Run Holistic (and the crop pass) over every frame of a clip; ``person`` and
    ``person_box`` as in ``ClipDetector``."""
    detector = ClipDetector(width, height, crops=crops, person=person, person_box=person_box)
    feed(detector, frames, progress)
    return detector.finish()


def feed(clip, frames: Iterable[Frame], progress: Callable[[int], None] | None = None) -> None:
    """Add every frame to ``clip`` (a ``ClipDetector``, or anything with its ``add``, ``len``
    and ``close``), in order, reporting the count so far; its models are released at the end,
    also when a frame fails."""
    try:
        for frame in frames:
            clip.add(frame)
            if progress:
                progress(len(clip))
    finally:
        clip.close()

"""Second chances for small faces and hands: where Holistic found the body but not the face or
a hand, crop a region where it should be, upscale it, run the dedicated Face Mesh / Hands model
on the crop and map the landmarks back to the frame. The regions tried, in order: around
where the part was found in the frame before (parts move little between frames: the region
tracking MediaPipe's own pipelines do), then where the pose landmarks put it, at two scales
(the pose's guess at a hand's or face's size is rough). Regions whose middle is outside the
image are not tried: a hand out of view costs nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..conventions import KEYPOINT_CONFIDENT, KEYPOINT_SEEN

# BlazePose: nose, eyes, ears, mouth (0-10); per side elbow, wrist, pinky, index, thumb.
_FACE_POINTS = list(range(11))
_ARM = {"left": (13, 15, (17, 19, 21)), "right": (14, 16, (18, 20, 22))}
CROP_SIZE = 256
# The pose's region and one this much larger: a face or hand the pose region cuts off or
# shows too small is found in the wider one (measured: scripts/measure_detection_rates.py).
REGION_SCALES = (1.0, 1.5)
# A region around a part's landmarks from the frame before: its box's longer side times this
# (the face fills ~60% of the crop, as Face Mesh expects; a hand ~50%, with room to move).
AROUND_FOUND = {"face": 1.6, "hand": 2.0}

Region = tuple[np.ndarray, float]  # centre (2,), side (pixels)


def face_region(pose: np.ndarray, min_size: float = 24.0) -> tuple[np.ndarray, float] | None:
    """(centre, side) of a square around the head from the pose's face points, or None."""
    points = pose[_FACE_POINTS]
    seen = points[points[:, 2] > KEYPOINT_CONFIDENT, :2]
    if len(seen) < 3:
        return None
    spread = np.linalg.norm(seen[:, None] - seen[None], axis=-1).max()
    return seen.mean(0), max(3.2 * spread, min_size)


def hand_region(pose: np.ndarray, side: str, min_size: float = 24.0
                ) -> tuple[np.ndarray, float] | None:
    """(centre, side) of a square around one hand, from its wrist, finger points and elbow."""
    elbow, wrist, fingers = _ARM[side]
    if min(pose[wrist, 2], pose[elbow, 2]) <= KEYPOINT_SEEN:
        return None
    forearm = pose[wrist, :2] - pose[elbow, :2]
    seen = pose[list(fingers)]
    tips = seen[seen[:, 2] > KEYPOINT_SEEN, :2]
    centre = tips.mean(0) if len(tips) else pose[wrist, :2] + 0.4 * forearm
    centre = 0.5 * (centre + pose[wrist, :2]) + 0.15 * forearm
    return centre, max(1.6 * np.linalg.norm(forearm), min_size)


def around(points: np.ndarray, kind: str) -> Region:
    """The region around a part's landmarks (K, 2) found in the frame before."""
    low, high = points.min(0), points.max(0)
    return (low + high) / 2, max(AROUND_FOUND[kind] * float((high - low).max()), 24.0)


def regions(previous: np.ndarray | None, predicted: Region | None, kind: str,
            width: int, height: int) -> list[Region]:
    """The regions to try for one part, in order (module docstring), those centred outside
    the ``width`` x ``height`` image left out."""
    tried = [] if previous is None else [around(previous, kind)]
    if predicted is not None:
        tried += [(predicted[0], predicted[1] * scale) for scale in REGION_SCALES]
    return [(centre, side) for centre, side in tried
            if 0 <= centre[0] < width and 0 <= centre[1] < height]


def regions_this_frame(tried: list[Region], previous_found: bool, limit: int | None,
                       turn: int) -> tuple[list[Region], int]:
    """Of the regions ``tried`` for a part (``regions``), those to try this frame, at most
    ``limit`` (None: all), and the next frame's ``turn``: where the part was found in the
    frame before (``previous_found``: ``tried`` starts there), from the start; else the
    pose's regions in turn, from ``turn`` on."""
    if limit is None or len(tried) <= limit:
        return tried, turn
    if previous_found:
        return tried[:limit], turn
    return [tried[(turn + i) % len(tried)] for i in range(limit)], turn + limit


def crop(image: np.ndarray, centre: np.ndarray, side: float, size: int = CROP_SIZE
         ) -> tuple[np.ndarray, np.ndarray]:
    """The square region resampled to ``size`` pixels, and the 2x3 map crop -> frame pixels."""
    import cv2

    scale = size / side
    to_crop = np.array([[scale, 0, size / 2 - scale * centre[0]],
                        [0, scale, size / 2 - scale * centre[1]]])
    patch = cv2.warpAffine(image, to_crop, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
    to_frame = np.array([[1 / scale, 0, centre[0] - side / 2],
                         [0, 1 / scale, centre[1] - side / 2]])
    return patch, to_frame


def to_frame(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Crop pixel coordinates (K, 2) mapped back into the frame."""
    return points @ transform[:, :2].T + transform[:, 2]


@dataclass(frozen=True)
class CropBudget:
    """The crop pass's limits for a detector with a frame rate to keep (live capture; None
    elsewhere: every region, every frame). At most ``regions_per_frame`` regions per part and
    frame: a part found in the frame before is looked for around it first; one that stays
    missing is looked for in the pose's regions in turn, one frame after the other. And a part
    the crops missed ``k`` times in a row is looked for again only ``2**k`` frames later, at
    most ``max_wait``: a hand out of view or blurred stops costing a crop every frame."""

    regions_per_frame: int = 1
    max_wait: int = 4


class CropSchedule:
    """When and where one part's crop pass looks, frame after frame, under a ``CropBudget``
    (None: every region, every frame). Pure: ``regions`` once per frame the part is missing,
    ``tried`` after looking."""

    def __init__(self, budget: CropBudget | None):
        self.budget = budget
        self._turn = 0  # the next of the pose's regions to try
        self._misses = 0  # the crops' misses in a row
        self._waited = 0  # frames since the crops last looked

    def regions(self, candidates: list[Region], previous_found: bool) -> list[Region]:
        """The regions to try this frame, of the part's ``candidates`` (``regions``);
        ``previous_found``: the part was found in the frame before (``candidates`` start
        around it)."""
        if self.budget is None:
            return candidates
        if previous_found:
            self._misses = 0
        self._waited += 1
        if self._waited < min(2 ** self._misses, self.budget.max_wait):
            return []
        self._waited = 0
        chosen, self._turn = regions_this_frame(candidates, previous_found,
                                                self.budget.regions_per_frame, self._turn)
        return chosen

    def tried(self, found: bool) -> None:
        """What looking in this frame's regions gave."""
        self._misses = 0 if found else self._misses + 1


class CropDetector:
    """Face Mesh and Hands on crops (static-image mode: each crop stands alone), each part's
    regions chosen by a ``CropSchedule`` under ``budget``."""

    def __init__(self, budget: CropBudget | None = None):
        from .face_mesh import FaceMeshDetector, QuietSolution, import_mediapipe

        mp = import_mediapipe()
        self._face = FaceMeshDetector()
        self._hands = QuietSolution(lambda: mp.solutions.hands.Hands(
            static_image_mode=True, max_num_hands=1, model_complexity=1))
        self.budget = budget
        self._schedules: dict[str, CropSchedule] = {}

    def face(self, image: np.ndarray, pose: np.ndarray, previous: np.ndarray | None = None
             ) -> np.ndarray | None:
        """The face's landmarks, or None; ``previous``: its landmarks in the frame before."""
        return self._look("face", image, previous, face_region(pose), "face", self._face)

    def hand(self, image: np.ndarray, pose: np.ndarray, side: str,
             previous: np.ndarray | None = None) -> np.ndarray | None:
        """One hand's landmarks, or None; ``previous``: its landmarks in the frame before."""
        return self._look(side, image, previous, hand_region(pose, side), "hand",
                          self._hand_points)

    def _look(self, part: str, image: np.ndarray, previous: np.ndarray | None,
              predicted: Region | None, kind: str,
              detect: Callable[[np.ndarray], np.ndarray | None]) -> np.ndarray | None:
        """The part's landmarks in the first of this frame's regions where ``detect`` finds
        them on the crop, mapped into the frame; None if none."""
        height, width = image.shape[:2]
        schedule = self._schedules.setdefault(part, CropSchedule(self.budget))
        tried = schedule.regions(regions(previous, predicted, kind, width, height),
                                 previous is not None)
        found = None
        for region in tried:
            patch, transform = crop(image, *region)
            points = detect(patch)
            if points is not None:
                found = to_frame(points, transform)
                break
        if tried:
            schedule.tried(found is not None)
        return found

    def _hand_points(self, patch: np.ndarray) -> np.ndarray | None:
        result = self._hands.process(patch)
        if not result.multi_hand_landmarks:
            return None
        return np.array([[p.x * CROP_SIZE, p.y * CROP_SIZE]
                         for p in result.multi_hand_landmarks[0].landmark])

    def close(self) -> None:
        self._face.close()
        self._hands.close()

"""Background patches cut from photos, away from the people in them: real clutter, light and
texture behind a synthetic person, without a second person the labels know nothing about.

The people of each photo are found once, when a patch is first cut from it, by MediaPipe's
person segmentation (the selfie-segmentation model in the mediapipe wheel: every person, not
only the most prominent one as a pose detector finds), grown by ``PERSON_MARGIN``; a patch
holds no pixel of that mask. The segmentation can miss people (tiny ones, odd poses), so a
folder known to be free of people is the safer source. Photos are kept in memory at most
``MAX_SIDE`` pixels on their long side (patches are 256 pixels high anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from backend.footage_files import is_still, natural_key

from ..errors import TrainingDataError
from .recrop import CROP_HEIGHT, CROP_WIDTH

MAX_SIDE = 800
PERSON_THRESHOLD = 0.5  # segmentation confidence of a person pixel
PERSON_MARGIN = 0.03  # of the photo's long side: the person mask grows by this much
MIN_PATCH = 48  # pixels: the smallest patch height cut from a photo
ATTEMPTS = 16  # random patches tried before giving up on a draw

# An RGB photo -> (H, W) bool: where people are.
FindPeople = Callable[[np.ndarray], np.ndarray]


def segment_people(image: np.ndarray) -> np.ndarray:
    """Where people are in an RGB photo, by MediaPipe's selfie segmentation (general model):
    on the whole photo and on its overlapping halves' quarters, since the model, made for
    people near a webcam, misses small ones in a wide view."""
    from backend.perception.face_mesh import QuietSolution, import_mediapipe

    mediapipe = import_mediapipe()
    segmenter = QuietSolution(
        lambda: mediapipe.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))
    rows, columns = image.shape[:2]
    people = np.zeros((rows, columns), bool)
    tiles = [(0, 0, rows, columns)] + [
        (top, left, top + rows // 2, left + columns // 2)
        for top in (0, rows // 4, rows // 2) for left in (0, columns // 4, columns // 2)]
    try:
        for top, left, bottom, right in tiles:
            tile = np.ascontiguousarray(image[top:bottom, left:right])
            found = segmenter.process(tile).segmentation_mask > PERSON_THRESHOLD
            people[top:bottom, left:right] |= found
    finally:
        segmenter.close()
    return people


class PhotoPatches:
    """Random patches of the still images under ``folder`` (searched recursively), each at the
    crop's 3:4 aspect, clear of the people ``find_people`` sees."""

    def __init__(self, folder: str | Path, find_people: FindPeople = segment_people):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise TrainingDataError(f"{self.folder}: no such folder of background photos")
        self.files = sorted((p for p in self.folder.rglob("*") if p.is_file() and is_still(p)),
                            key=lambda p: (str(p.parent), natural_key(p)))
        if not self.files:
            raise TrainingDataError(f"{self.folder}: holds no still images (jpg, png, ...) to "
                                    f"cut backgrounds from")
        self.find_people = find_people
        self._photos: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def _photo(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Photo ``index`` (RGB, shrunk to MAX_SIDE) and the running sums of its grown person
        mask (so a patch's person pixels are counted in four look-ups); None when it cannot be
        decoded."""
        if index not in self._photos:
            import cv2

            image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
            if image is None:
                self._photos[index] = None
            else:
                zoom = MAX_SIDE / max(image.shape[:2])
                if zoom < 1:
                    image = cv2.resize(image, None, fx=zoom, fy=zoom,
                                       interpolation=cv2.INTER_AREA)
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                grow = 2 * int(PERSON_MARGIN * max(image.shape[:2])) + 1
                people = cv2.dilate(self.find_people(image).astype(np.uint8),
                                    np.ones((grow, grow), np.uint8))
                self._photos[index] = (image, cv2.integral(people))
        return self._photos[index]

    def __call__(self, rng: np.random.Generator,
                 size: tuple[int, int] = (CROP_HEIGHT, CROP_WIDTH)) -> np.ndarray | None:
        """A (height, width, 3) uint8 patch, or None when ATTEMPTS random tries found no place
        clear of people."""
        import cv2

        for _ in range(ATTEMPTS):
            photo = self._photo(int(rng.integers(len(self.files))))
            if photo is None:
                continue
            image, people = photo
            rows, columns = image.shape[:2]
            top = min(rows, int(columns * size[0] / size[1]))
            if top < MIN_PATCH:
                continue
            height = int(np.exp(rng.uniform(np.log(MIN_PATCH), np.log(top))))
            width = int(height * size[1] / size[0])
            x0, y0 = int(rng.integers(columns - width + 1)), int(rng.integers(rows - height + 1))
            x1, y1 = x0 + width, y0 + height
            if people[y1, x1] - people[y0, x1] - people[y1, x0] + people[y0, x0] > 0:
                continue
            return cv2.resize(image[y0:y0 + height, x0:x0 + width], (size[1], size[0]),
                              interpolation=cv2.INTER_AREA if height > size[0]
                              else cv2.INTER_LINEAR)
        return None

"""``backend people``: who is in the footage, numbered as ``--person`` counts them.

Scans from the first frame to the first one that shows anybody (where ``--person`` makes its
choice), lists the people's boxes left to right and can draw them numbered on that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..perception.frames import open_footage
from ..perception.holistic import PersonFinder
from ..perception.people import find_people


@dataclass
class PeopleInFrame:
    frame: int  # footage frame index; -1 when nobody was found in the frames scanned
    boxes: list[np.ndarray]  # x0, y0, x1, y1 in pixels, person 1 (the leftmost) first
    image: np.ndarray | None  # that frame, RGB


def people_in_footage(footage: str | Path, max_frames: int = 300) -> PeopleInFrame:
    """The people of the first frame (within ``max_frames``) that shows anybody."""
    finder = PersonFinder()
    try:
        for frame in open_footage(footage):
            if frame.index >= max_frames:
                break
            boxes = find_people(frame.image, finder)
            if boxes:
                return PeopleInFrame(frame.index, boxes, frame.image)
    finally:
        finder.close()
    return PeopleInFrame(-1, [], None)


LATER_STEP = 15  # frames between looks for people who came in later (half a second at 30)


def people_later(footage: str | Path, count: int, after: int, max_frames: int | None = None,
                 step: int = LATER_STEP) -> list[tuple[int, int]]:
    """(frame, people seen) for the frames, every ``step`` after frame ``after``, that show
    more than ``count`` people: someone who came in after the numbering."""
    finder = PersonFinder()
    more = []
    try:
        for frame in open_footage(footage):
            if max_frames is not None and frame.index >= max_frames:
                break
            if frame.index <= after or (frame.index - after) % step:
                continue
            seen = len(find_people(frame.image, finder))
            if seen > count:
                more.append((frame.index, seen))
    finally:
        finder.close()
    return more


def draw_people(image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
    """The frame with each person's box and number drawn on it (RGB)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    thickness = max(2, round(max(image.shape[:2]) / 400))
    for number, box in enumerate(boxes, start=1):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 40, 40), thickness)
        cv2.putText(out, str(number), (x0 + 4 * thickness, y0 + 16 * thickness),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thickness, (255, 40, 40), thickness)
    return out

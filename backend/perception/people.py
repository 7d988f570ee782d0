"""Which person, when the footage shows several.

Holistic follows one person: whoever its pose detector finds most prominent. To let users pick,
the people in a frame are found by asking Holistic repeatedly, painting out each person it
finds before asking again, and numbered from the left (person 1 is the leftmost). The chosen
person is then followed through the clip: every frame is shown to Holistic with everything
outside a window around that person's last box painted out, and the other people found beside
them painted out too (all but where they overlap the person), so nobody else can take over:
the window alone, grown for a frame's motion, takes in the neighbours of people standing close
together, and Holistic then picks whoever is most prominent in it. The frame keeps its size,
so landmarks need no mapping back and video-mode tracking holds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..conventions import MAX_PEOPLE
from ..errors import ClipError, InputError

FILL = 128  # a flat grey: no edges for a detector to find
WINDOW_MARGIN = 0.35  # of the box's longer side, on every side: room for a frame's motion
LOST_GROWTH = 0.15  # the window grows by this much of the box per frame the person is missed
# Around the person's last box, others are never painted: room for a frame's motion.
KEEP_MARGIN = 0.05

# Landmarks of one image -> its person box (x0, y0, x1, y1), NaN when nobody was found.
FindOne = Callable[[np.ndarray], np.ndarray]


class PersonNotFound(ClipError, ValueError):
    """The footage does not show the person asked for."""


def _region(image: np.ndarray, box: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of ``image`` inside ``box`` (x0, y0, x1, y1; clipped to it)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in np.clip(box, 0, [width, height, width, height]))
    return slice(y0, y1), slice(x0, x1)


def paint_out(image: np.ndarray, box: np.ndarray, inside: bool = True) -> np.ndarray:
    """A copy of ``image`` with the box (``inside``) or everything but the box painted grey."""
    region = _region(image, box)
    if inside:
        out = image.copy()
        out[region] = FILL
        return out
    out = np.full_like(image, FILL)
    out[region] = image[region]
    return out


def paint_out_others(view: np.ndarray, image: np.ndarray, others: list[np.ndarray],
                     keep: np.ndarray) -> np.ndarray:
    """``view`` with the ``others`` boxes painted out, except inside ``keep`` (where the
    followed person is), which shows ``image`` as it is."""
    for box in others:
        view = paint_out(view, box)
    region = _region(image, keep)
    view[region] = image[region]
    return view


def find_people(image: np.ndarray, find_one: FindOne, max_people: int = MAX_PEOPLE
                ) -> list[np.ndarray]:
    """Boxes of the people in ``image``, left to right (by box centre)."""
    boxes: list[np.ndarray] = []
    remaining = image
    for _ in range(max_people):
        box = find_one(remaining)
        if np.isnan(box).any() or _size(box) < 8:
            break
        boxes.append(box)
        remaining = paint_out(remaining, box)
    return sorted(boxes, key=lambda b: b[0] + b[2])


def window(box: np.ndarray, margin: float) -> np.ndarray:
    """``box`` grown by ``margin`` times its longer side on every side."""
    pad = margin * _size(box)
    return box + np.array([-pad, -pad, pad, pad])


def _size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


class PersonFollower:
    """Keeps one person in view: the ``person``-th from the left in the first frame that shows
    anybody, or whoever is at ``box`` in the first frame (to carry a choice on from an earlier
    stretch of the same footage).

    ``view`` gives the image Holistic should see for a frame; ``update`` takes the box Holistic
    then found (NaN if none) so the window follows the person.
    """

    def __init__(self, find_one: FindOne, person: int | None = None,
                 box: np.ndarray | None = None):
        if (person is None) == (box is None):
            raise ValueError("follow either a person number or a box, not both or neither")
        if person is not None and not 1 <= person <= MAX_PEOPLE:
            raise InputError(f"person must be 1 (the leftmost) to {MAX_PEOPLE}, not {person}")
        if box is not None and not (np.isfinite(box).all() and box[0] < box[2]
                                    and box[1] < box[3]):
            raise InputError(f"a person box is x0, y0, x1, y1 with x0 < x1 and y0 < y1, not "
                             f"{list(box)}")
        self.person = person
        self._find_one = find_one
        self._box = None if box is None else np.asarray(box, dtype=float)
        self._others: list[np.ndarray] = []  # the other people where the choice was made
        self._missed = 0

    @property
    def choosing(self) -> bool:
        """True until the person to follow is known (so the finder is still needed)."""
        return self._box is None

    def view(self, index: int, image: np.ndarray) -> np.ndarray | None:
        """What Holistic should see of frame ``index``; None while nobody has appeared yet."""
        if self._box is None:
            people = find_people(image, self._find_one)
            if not people:
                return None
            if self.person > len(people):
                raise PersonNotFound(
                    f"person {self.person} was asked for, but frame {index} (the first showing "
                    f"anybody) shows {len(people)} {'person' if len(people) == 1 else 'people'}, "
                    f"numbered 1 to {len(people)} from the left; `backend people FOOTAGE` "
                    "draws them")
            self._box = people[self.person - 1]
            self._others = people[:self.person - 1] + people[self.person:]
        margin = WINDOW_MARGIN + LOST_GROWTH * self._missed
        view = paint_out(image, window(self._box, margin), inside=False)
        return paint_out_others(view, image, self._others, window(self._box, KEEP_MARGIN))

    def update(self, box: np.ndarray) -> None:
        """The person's box as found in the view just given (NaN: missed in that frame)."""
        if self._box is None:
            return
        if np.isnan(box).any():
            self._missed += 1
        else:
            self._box, self._missed = box, 0

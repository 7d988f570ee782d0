"""Fresh backgrounds for synthetic people: procedural ones made on the spot from a random
generator (a colour gradient, multi-scale noise, random shapes, some blur), or patches of
photos (``background_photos``). A render is stored once and seen on a new background each
time it is drawn."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.regressor.vit import INPUT_SIZE

# A source of photo patches: (generator, (height, width)) -> uint8 RGB, or None when it has
# no patch to give.
PhotoSource = Callable[[np.random.Generator, tuple[int, int]], np.ndarray | None]


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear or radial blend between two random colours, (H, W, 3) float in [0, 255]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.7:
        angle = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    else:
        t = np.hypot(x - rng.uniform(0, width), y - rng.uniform(0, height))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    return start + t[..., None] * (end - start)


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-scale value noise, (H, W, 3) float with values around [-1, 1]: random grids from
    coarse to fine, each smoothly enlarged, finer ones weaker."""
    import cv2

    total = np.zeros((height, width, 3), np.float32)
    persistence = rng.uniform(0.35, 0.75)
    for octave, cells in enumerate((2, 4, 8, 16, 32, 64)):
        grid = rng.normal(size=(cells, max(2, cells * width // height), 3)).astype(np.float32)
        if rng.random() < 0.5:  # grey noise: texture without colour
            grid[..., 1:] = grid[..., :1]
        total += persistence**octave * cv2.resize(grid, (width, height),
                                                  interpolation=cv2.INTER_CUBIC)
    return total / max(float(np.abs(total).max()), 1e-6)


def _shapes(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draws ``count`` random rectangles, ellipses, polygons and lines into ``image``."""
    import cv2

    height, width = image.shape[:2]
    for _ in range(count):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(4)
        x, y = int(rng.integers(width)), int(rng.integers(height))
        size = int(rng.uniform(0.05, 0.5) * height)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.2, 2))),
                          colour, -1)
        elif kind == 1:
            cv2.ellipse(image, (x, y), (size, int(size * rng.uniform(0.2, 1))),
                        float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 2:
            corners = rng.normal((x, y), size, (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(image, [corners], colour)
        else:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 12)))


def procedural_background(rng: np.random.Generator, size: tuple[int, int] = INPUT_SIZE
                          ) -> np.ndarray:
    """A random (height, width, 3) uint8 RGB background: a gradient, with noise of random
    strength and scale, random shapes, a random blur and saturation."""
    import cv2

    height, width = size
    image = _gradient(rng, height, width)
    image += _noise(rng, height, width) * rng.uniform(0, 90)
    _shapes(image, rng, int(rng.integers(0, 9)))
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 4)))
    grey = image.mean(2, keepdims=True)  # real scenes are rarely this colourful
    image = grey + rng.uniform(0.2, 1.0) * (image - grey)
    return image.clip(0, 255).astype(np.uint8)


class Backgrounds:
    """Backgrounds to composite people onto: photo patches for ``photo_fraction`` of the
    draws when a photo source is given (procedural ones when it has none to give), else
    procedural ones."""

    def __init__(self, photos: PhotoSource | None = None, photo_fraction: float = 0.5):
        self.photos, self.photo_fraction = photos, photo_fraction

    def __call__(self, rng: np.random.Generator, size: tuple[int, int] = INPUT_SIZE
                 ) -> np.ndarray:
        if self.photos is not None and rng.random() < self.photo_fraction:
            patch = self.photos(rng, size)
            if patch is not None:
                return patch
        return procedural_background(rng, size)

"""Movie files as session frames, decoded by Blender itself.

The add-on bundles no video decoder and Blender's Python cannot read a movie's pixels
directly, but Blender's sequencer can render any frame of a movie strip to a file. A private
scene holding just that strip renders one frame at a time to JPEG; the bytes go to the backend
as an image sequence's files would. The "Standard" view transform keeps the footage's colours
(the default transform would tone-map them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import bpy

from .footage import FootageError, check_range

_SCENE = ".pear_movie_decoder"  # the leading dot keeps it out of Blender's scene menus
_QUALITY = 95  # JPEG quality of the frames sent: ~10x smaller than PNG, errors of ~1 grey level


class MovieFrames:
    """A movie's frames ``first`` to ``last`` (inclusive, 0-based) at the movie's frame rate
    (or ``fps``). Holds a private scene until ``close()``."""

    def __init__(self, path: str | Path, first: int = 0, last: int | None = None,
                 fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FootageError(f"{self.path} does not exist")
        self._scene = bpy.data.scenes.new(_SCENE)
        strip = self._scene.sequence_editor_create().strips.new_movie(
            "footage", str(self.path), channel=1, frame_start=1)
        element = strip.elements[0]
        if strip.fps <= 0 or element.orig_width == 0:
            self.close()
            raise FootageError(f"Blender cannot decode {self.path.name} as a movie (unsupported "
                               "or damaged file): convert it to an image sequence or H.264 MP4")
        total = strip.frame_final_duration
        self.first, last = check_range(first, last, total)
        self.count = last - self.first + 1
        self.fps = float(fps or strip.fps)
        self.width, self.height = element.orig_width, element.orig_height
        render = self._scene.render
        render.resolution_x, render.resolution_y = self.width, self.height
        render.resolution_percentage = 100
        render.image_settings.file_format = "JPEG"
        render.image_settings.color_mode = "RGB"
        render.image_settings.quality = _QUALITY
        self._scene.view_settings.view_transform = "Standard"
        self._folder = tempfile.TemporaryDirectory(prefix="pear_movie_")
        render.filepath = str(Path(self._folder.name) / "frame_")

    def __len__(self) -> int:
        return self.count

    def frames(self, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, float, dict]]:
        """(index, time in seconds, encoded image map) for selected frames ``start`` to
        ``stop``, like ``ImageSequence.frames``."""
        if self._scene is None:
            raise FootageError(f"{self.path.name}: the movie was closed")
        for index in range(start, self.count if stop is None else stop):
            frame = 1 + self.first + index  # the strip starts at scene frame 1
            self._scene.frame_start = self._scene.frame_end = frame
            bpy.ops.render.render(animation=True, scene=self._scene.name)
            written = Path(bpy.path.abspath(self._scene.render.frame_path(frame=frame)))
            try:
                data = written.read_bytes()
            except OSError as exc:
                raise FootageError(f"frame {self.first + index} of {self.path.name} could not "
                                   f"be decoded: {exc}") from None
            written.unlink()
            yield index, index / self.fps, {"format": "jpeg", "data": data}

    def close(self) -> None:
        """Remove the private scene and the frame folder; safe to call twice."""
        if self._scene is not None:
            bpy.data.scenes.remove(self._scene)
            self._scene = None
        if getattr(self, "_folder", None) is not None:
            self._folder.cleanup()
            self._folder = None

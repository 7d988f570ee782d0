"""``backend avatar SOURCE_IMAGE --motion RESULT.npz --out OUT.mp4``: the person in one image,
animated by any recovered motion. The source image is fitted (the tracker), the person cut out
by the fitted mesh's silhouette, the avatar built once; then every frame of the motion is
rendered: its pose, expression and camera on the source person's shape (as PEAR's Eq. 6),
into a crop that follows the body, like the regressor's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..avatar.checkpoint import load_avatar
from ..body.asset import Asset
from ..errors import InputError
from ..perception.people import PersonNotFound
from ..regressor.inference import crop_person
from ..results import ClipResults, load_results
from .avatar_frames import AvatarAnimator, fit_source_image, renderer_checkpoint_path

SCALE = 2  # the video shows each 256x192 crop at this size


def avatar_video(source_image: str | Path, motion: str | Path, out: str | Path, asset: Asset,
                 checkpoint: str | Path | None = None, side_by_side: bool = False,
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write the video; returns what was done (frames, files)."""
    animator = AvatarAnimator(load_avatar(renderer_checkpoint_path(asset.asset_id, checkpoint),
                                          asset), asset)
    moves = load_results(motion)
    animator.check_motion(moves, str(motion))
    image = _read_rgb(source_image)
    try:
        source = fit_source_image(image, asset)
    except PersonNotFound as exc:
        raise PersonNotFound(f"{source_image}: {exc}") from None
    person = animator.build(image, source)
    footage = _footage(moves) if side_by_side else None
    frames = []
    for t in range(len(moves.frames)):
        rendered = animator.render(person, moves, t)
        frame = rendered.rgb
        if footage is not None:
            frame = np.concatenate([crop_person(footage(int(moves.frames[t])), rendered.center,
                                                rendered.height), frame], axis=1)
        frames.append(frame)
        if progress:
            progress("rendering the avatar", t + 1, len(moves.frames))
    _write_video(frames, out, _fps(moves))
    return {"frames": len(frames), "out": Path(out)}


def _read_rgb(path: str | Path) -> np.ndarray:
    from ..perception.frames import open_footage

    return next(iter(open_footage(path))).image


def _footage(results: ClipResults) -> Callable[[int], np.ndarray]:
    """Frame index -> the motion's footage frame (RGB); the footage must still be where the
    result file says it was."""
    from ..perception.frames import open_footage

    path = results.info.get("footage")
    if not path or not Path(path).exists():
        raise InputError(f"--side-by-side needs the motion's footage, and its result file "
                         f"names {path!r}, which is not there: move the footage back, or "
                         "leave out --side-by-side")
    frames = {frame.index: frame.image for frame in open_footage(path)}
    blank = np.zeros((results.height, results.width, 3), np.uint8)
    return lambda index: frames.get(index, blank)


def _fps(results: ClipResults) -> float:
    times = np.asarray(results.times, np.float64)
    return float(1 / np.median(np.diff(times))) if len(times) > 1 else 30.0


def _write_video(frames: list[np.ndarray], out: str | Path, fps: float) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    size = (width * SCALE, height * SCALE)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for frame in frames:
        writer.write(cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR),
                                  cv2.COLOR_RGB2BGR))
    writer.release()

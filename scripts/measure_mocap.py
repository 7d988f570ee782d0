#!/usr/bin/env python3
"""Retarget every BVH clip below a folder onto a body model and report what came out: clips,
frames and seconds per skeleton convention, the bone-direction error (mean / max degrees over
the kept frames), how the model's elbows bend against the tracker's hinge axes, and a few
pictures of retargeted poses beside the BVH skeleton.

    PEAR_HOME=... python scripts/measure_mocap.py [--mocap ../shared/data/mocap/cmu]
        [--asset open] [--pictures DIR]

The numbers in docs/training.md ("Poses from motion capture") come from this script.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from backend.body.model import BodyModel
from backend.body.registry import load
from backend.mocap.bvh import find_bvh_files, forward_kinematics, read_bvh
from backend.mocap.bvh_conventions import detect_convention
from backend.mocap.poses import asset_skeleton
from backend.mocap.retarget import bone_direction_errors, retarget, select_frames

REPO = Path(__file__).resolve().parents[1]
LUMPED = "spine3-neck"  # mb2/max split the neck in two joints; the model has one


def posed(model: BodyModel, clip, frames: np.ndarray):
    """The model's output for some of a retargeted clip's frames."""
    with torch.no_grad():
        return model(global_orient=torch.as_tensor(clip.global_orient[frames]),
                     body_pose=torch.as_tensor(clip.body_pose[frames].reshape(len(frames), -1)),
                     transl=torch.as_tensor(clip.transl[frames]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mocap", type=Path, default=REPO.parent / "shared/data/mocap/cmu")
    parser.add_argument("--asset", default="open")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="write PNGs of a few retargeted poses here")
    args = parser.parse_args()

    model = BodyModel(load(args.asset)).double()
    skeleton = asset_skeleton(model)
    elbows = [skeleton.index(f"{side}_elbow") for side in ("left", "right")]
    totals = defaultdict(lambda: defaultdict(float))
    errors, lumped, sideways = defaultdict(list), defaultdict(list), defaultdict(list)
    pictures = []
    started = time.perf_counter()
    for path in find_bvh_files(args.mocap):
        clip = read_bvh(path)
        convention = detect_convention(clip.joint_names, str(path))
        captured = select_frames(clip, convention, target_fps=clip.fps)
        kept = select_frames(clip, convention)
        retargeted = retarget(clip, skeleton, path.relative_to(args.mocap).as_posix(), kept,
                              convention)
        joints = np.concatenate([posed(model, retargeted, chunk).joints.numpy()
                                 for chunk in np.array_split(np.arange(len(kept)),
                                                             len(kept) // 200 + 1)])
        per_bone = bone_direction_errors(clip, convention, skeleton, kept, joints)
        errors[convention.name].append(np.concatenate(
            [e for bone, e in per_bone.items() if bone != LUMPED]))
        if LUMPED in per_bone and convention.name != "daz":
            lumped[convention.name].append(per_bone[LUMPED])
        for elbow in elbows:
            rotvec = retargeted.body_pose[:, skeleton.body_joints.index(elbow) - 1]
            axis = skeleton.hinge_axes[elbow]
            off_axis = rotvec - (rotvec @ axis)[:, None] * axis
            sideways[convention.name].append(np.degrees(np.linalg.norm(off_axis, axis=-1)))
        row = totals[convention.name]
        row["clips"] += 1
        row["frames"] += len(captured)
        row["seconds"] += len(captured) / clip.fps
        row["kept"] += len(kept)
        if args.pictures and len(pictures) < 9 and int(row["clips"]) <= 3:
            pictures.append((path, clip, convention, retargeted))
    elapsed = time.perf_counter() - started

    print(f"asset {args.asset!r}, {args.mocap}: {elapsed:.1f} s to read and retarget")
    print("| convention | clips | captured frames | seconds | kept frames (~10 fps) | "
          "bone error mean / max (deg) | lower neck mean / max | elbow off-hinge mean / p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in totals.items():
        e, s = np.concatenate(errors[name]), np.concatenate(sideways[name])
        neck = np.concatenate(lumped[name]) if lumped[name] else None
        neck_text = f"{neck.mean():.1f} / {neck.max():.1f}" if neck is not None else "exact"
        print(f"| {name} | {int(row['clips'])} | {int(row['frames'])} | {row['seconds']:.1f} | "
              f"{int(row['kept'])} | {e.mean():.3f} / {e.max():.3f} | {neck_text} | "
              f"{s.mean():.1f} / {np.percentile(s, 95):.1f} |")
    if args.pictures:
        draw_pictures(model, pictures, args.pictures)


def draw_pictures(model: BodyModel, pictures: list, folder: Path) -> None:
    """Per clip, three of its kept frames: the BVH skeleton (blue) over the retargeted model's
    mesh (grey points) and skeleton (red), from the front and the side of the pelvis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    parents = model.chain.parents[:22]
    for path, clip, convention, retargeted in pictures:
        picks = np.linspace(0, len(retargeted) - 1, 3).round().astype(int)
        output = posed(model, retargeted, picks)
        _, positions = forward_kinematics(clip, retargeted.frames[picks])
        positions = positions * retargeted.scale  # at the model's size, as transl is
        figure, axes = plt.subplots(2, 3, figsize=(9, 9))
        for column, pick in enumerate(picks):
            vertices = output.vertices[column, ::5].numpy()
            joints = output.joints[column].numpy()
            # Seen from the front and the left of the pelvis, whichever way the take faces.
            x_axis, z_axis = heading_axes(joints)
            for row, (horizontal, label) in enumerate(((x_axis, "front"), (z_axis, "side"))):
                ax = axes[row, column]
                up = np.array([0.0, 1.0, 0.0])
                ax.scatter(vertices @ horizontal, vertices @ up, s=0.1, c="0.75")
                for joint, parent in enumerate(clip.parents):
                    if parent >= 0:
                        segment = positions[column, [parent, joint]]
                        ax.plot(segment @ horizontal, segment @ up, "b-", lw=2, alpha=0.6)
                for joint, parent in enumerate(parents):
                    if parent >= 0:
                        segment = joints[[parent, joint]]
                        ax.plot(segment @ horizontal, segment @ up, "r-", lw=1)
                ax.set_aspect("equal")
                ax.set_title(f"frame {retargeted.frames[pick]} {label}", fontsize=8)
        figure.suptitle(f"{path.name} ({convention.name}): BVH blue, model red", fontsize=9)
        figure.tight_layout()
        target = folder / f"{convention.name}_{path.stem}.png"
        figure.savefig(target, dpi=70)
        plt.close(figure)
        print("wrote", target)


def heading_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal unit vectors to the body's left (across the hips) and forward."""
    left = joints[1] - joints[2]
    left = np.array([left[0], 0.0, left[2]]) / np.linalg.norm([left[0], left[2]])
    forward = np.cross(left, [0.0, 1.0, 0.0])
    return left, forward


if __name__ == "__main__":
    main()

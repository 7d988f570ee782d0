#!/usr/bin/env python3
"""How far MediaPipe's metric 3D pose (``pose_world_landmarks``) points each limb from the truth,
on the Human3.6M images mmpose ships with 3D joints:

    python scripts/measure_world_landmarks.py [--h36m DIR]

DIR defaults to ``../shared/data/real/mmpose/tests/data/h36m`` (``test_h36m.npz``: SPIN's
24-joint layout, camera frame, metres). Prints each image's mean angle over ten bones
(shoulders, hips, upper arms, forearms, thighs, shins) with the truth seen in the camera's axes
and in the crop's view (``backend.tracking.world_bones.crop_view``), then the means. This is
the error the tracker's 3D term must live with, and what ``backend bench tracker`` imitates.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from backend.perception.holistic import Holistic
from backend.tracking.world_bones import crop_view

DEFAULT = (Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mmpose" / "tests"
           / "data" / "h36m")
# bone -> (BlazePose pair, SPIN-24 pair), parent -> child
BONES = {"shoulders": ((11, 12), (9, 8)), "hips": ((23, 24), (3, 2)),
         "left upper arm": ((11, 13), (9, 10)), "left forearm": ((13, 15), (10, 11)),
         "right upper arm": ((12, 14), (8, 7)), "right forearm": ((14, 16), (7, 6)),
         "left thigh": ((23, 25), (3, 4)), "left shin": ((25, 27), (4, 5)),
         "right thigh": ((24, 26), (2, 1)), "right shin": ((26, 28), (1, 0))}
SPIN_HIPS = [2, 3]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _degrees(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1, 1))))


def bone_errors(world: np.ndarray, truth: np.ndarray) -> tuple[list[float], list[float]]:
    """Per bone: degrees between MediaPipe's direction and the truth's, in camera axes and in
    the crop's view."""
    hips = torch.zeros(1, 33, 3, dtype=torch.float64)
    hips[0, [23, 24]] = torch.as_tensor(truth[SPIN_HIPS, :3].mean(0))
    view = crop_view(hips)[0].numpy()
    camera, viewed = [], []
    for ours, theirs in BONES.values():
        found = world[ours[1], :3] - world[ours[0], :3]
        true = truth[theirs[1], :3] - truth[theirs[0], :3]
        camera.append(_degrees(found, true))
        viewed.append(_degrees(found, view @ true))
    return camera, viewed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--h36m", type=Path, default=DEFAULT)
    folder = parser.parse_args().h36m
    labels = np.load(folder / "test_h36m.npz")
    images = {path.name: path for path in folder.rglob("*.jpg")}
    camera_all, viewed_all = [], []
    with Holistic(static=True, crops=False) as holistic:
        for name, truth in zip(labels["imgname"], labels["S"], strict=True):
            image = cv2.cvtColor(cv2.imread(str(images[str(name)])), cv2.COLOR_BGR2RGB)
            world = holistic.detect(image).pose_world
            if world[:, 3].max() == 0:
                print(f"{name}: nobody found")
                continue
            camera, viewed = bone_errors(world, truth)
            camera_all.append(camera)
            viewed_all.append(viewed)
            print(f"{name}: {np.mean(camera):.1f} deg in camera axes, {np.mean(viewed):.1f} in "
                  f"the crop's view")
    viewed_all = np.array(viewed_all)
    print(f"{len(viewed_all)} images, {viewed_all.size} bones: mean {np.mean(camera_all):.1f} "
          f"deg in camera axes, {viewed_all.mean():.1f} in the crop's view (median "
          f"{np.median(viewed_all):.1f})")
    print("per bone (crop's view): " + ", ".join(
        f"{bone} {error:.0f}" for bone, error in zip(BONES, viewed_all.mean(0), strict=True)))


if __name__ == "__main__":
    main()

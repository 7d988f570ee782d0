"""``backend eval coco-wholebody``: PCK of the raw detector and of the fitted model's projected
keypoints on COCO-WholeBody annotations (body 17, each hand 21, face 68).

As PEAR and HMR2 report on COCO: a keypoint is correct when it lies within alpha x max(box width,
box height) of the annotation, alpha in {0.05, 0.1}; a keypoint with no prediction is wrong.
Each annotated person is detected in crops of ``PERSON_CROPS`` times its box (the evaluation's
usual 1.25 alone leaves MediaPipe too little context, and no one scale suits every person:
docs/tracker.md), the crops' detections are fused point by point (``fuse_detections``), and the
person is fitted on its own, to the image parts and BlazePose's metric 3D pose as ``backend fit``
is; single images are cheap to fit, so the body stage runs longer than for clips.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..body.model import BodyModel
from ..camera import project, to_camera
from ..errors import InputError
from ..perception.holistic import FrameLandmarks, Holistic, own_parts
from ..tracking.tracker import PART_LANDMARKS, Keypoints, Tracker, TrackerConfig

# The crops around an annotated person's box that MediaPipe sees, as multiples of the box: the
# best single scale and one step of 1.2x either side (chosen by measurement on mmpose's
# COCO-WholeBody people: docs/tracker.md).
PERSON_CROPS = (1.25, 1.5, 1.8)

# COCO-17 in BlazePose's 33.
COCO17_FROM_POSE33 = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
# The 68 iBUG points (jaw from the person's right, brows, nose, eyes, mouth) in Face Mesh's 478.
FACE68_FROM_MESH478 = [
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 78, 81, 13, 311, 308, 402, 14, 178,
]
PARTS = {"body": ("keypoints", "pose"), "left_hand": ("lefthand_kpts", "left_hand"),
         "right_hand": ("righthand_kpts", "right_hand"), "face": ("face_kpts", "face")}


@dataclass
class Person:
    image: Path
    box: np.ndarray  # x, y, w, h
    truth: dict[str, np.ndarray]  # part -> (K, 3) x, y, visibility


def load_people(data: Path) -> list[Person]:
    files = sorted(data.glob("*wholebody*.json"))
    if not files:
        raise InputError(f"{data}: no COCO-WholeBody annotation file (*wholebody*.json); "
                         "--data takes the folder holding it and its images")
    with open(files[0]) as handle:
        annotations = json.load(handle)
    images = {image["id"]: data / image["file_name"] for image in annotations["images"]}
    people = []
    for item in annotations["annotations"]:
        truth = {part: np.asarray(item[key], dtype=float).reshape(-1, 3)
                 for part, (key, _) in PARTS.items()}
        people.append(Person(images[item["image_id"]], np.asarray(item["bbox"], float), truth))
    return people


def _to_parts(pose, face, left, right) -> dict[str, np.ndarray]:
    """Detector/fit output (pixels + confidence) in the annotation's keypoint sets."""
    return {"body": pose[COCO17_FROM_POSE33], "face": face[FACE68_FROM_MESH478],
            "left_hand": left, "right_hand": right}


def pck_counts(predicted: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[int, int]:
    """(correct, annotated) keypoints; a prediction with confidence 0 counts as missing."""
    annotated = truth[:, 2] > 0
    found = predicted[:, 2] > 0
    distance = np.linalg.norm(predicted[:, :2] - truth[:, :2], axis=1)
    return int((annotated & found & (distance < threshold)).sum()), int(annotated.sum())


def evaluate(data: str | Path, model: BodyModel, iterations=(80, 600, 300),
             progress: Callable[[int, int], None] | None = None,
             crop_scales: tuple[float, ...] = PERSON_CROPS) -> dict:
    """PCK per source (detector, fit) and part; ``crop_scales``: the crops around each
    person's box the detector sees, as multiples of the box (their detections fused)."""
    import cv2

    if not crop_scales or min(crop_scales) <= 0:
        raise InputError(f"crop scales {list(crop_scales)}: give one or more multiples of the "
                         "person's box above 0 (e.g. --crop-scale 1.25 1.5 1.8)")
    people = load_people(Path(data))
    counts = {source: {part: {0.05: 0, 0.1: 0, "n": 0} for part in PARTS}
              for source in ("detector", "fit")}
    tracker = Tracker(model, TrackerConfig(iterations=iterations))
    # Static mode keeps no state between images: one detector serves every person.
    with Holistic(static=True) as holistic:
        for done, person in enumerate(people, start=1):
            image = cv2.cvtColor(cv2.imread(str(person.image)), cv2.COLOR_BGR2RGB)
            detected = fuse_detections([_detect_person(holistic, image, person.box, scale)
                                        for scale in crop_scales])
            # The fit sees what ``backend fit`` gives it: the image parts and the metric pose.
            keypoints = Keypoints(dict(zip(PART_LANDMARKS, (d[None] for d in
                                                            detected.image_parts),
                                           strict=True)), image.shape[1], image.shape[0],
                                  world=detected.pose_world[None])
            predictions = {"detector": _to_parts(*detected.image_parts)}
            if detected.pose[:, 2].max() > 0:
                predictions["fit"] = _to_parts(*_fitted_points(tracker, keypoints))
            else:  # a person the detector missed counts against the fit too
                for part in PARTS:
                    counts["fit"][part]["n"] += int((person.truth[part][:, 2] > 0).sum())
            threshold = max(person.box[2], person.box[3])
            for source, parts in predictions.items():
                for part, predicted in parts.items():
                    for alpha in (0.05, 0.1):
                        correct, annotated = pck_counts(predicted, person.truth[part],
                                                        alpha * threshold)
                        counts[source][part][alpha] += correct
                    counts[source][part]["n"] += annotated
            if progress:
                progress(done, len(people))
    return {source: {part: {"pck05": c[0.05] / max(c["n"], 1), "pck10": c[0.1] / max(c["n"], 1),
                            "n": c["n"]} for part, c in parts.items()}
            for source, parts in counts.items()}


def _detect_person(holistic: Holistic, image: np.ndarray, box: np.ndarray, crop_scale: float
                   ) -> FrameLandmarks:
    """Holistic on a ``crop_scale`` crop of the person's box (small people upscaled so its
    longer side is at least 512 pixels), in full-image pixels."""
    import cv2

    height, width = image.shape[:2]
    x, y, w, h = box
    centre, half = np.array([x + w / 2, y + h / 2]), crop_scale / 2 * np.array([w, h])
    x0, y0 = np.maximum(centre - half, 0).astype(int)
    x1, y1 = np.minimum(centre + half, [width, height]).astype(int)
    scale = max(1.0, 512 / max(x1 - x0, y1 - y0))
    patch = cv2.resize(image[y0:y1, x0:x1], None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_CUBIC)
    detected = holistic.detect(np.ascontiguousarray(patch))
    parts = [d.copy() for d in detected.image_parts]
    for d in parts:
        d[:, :2] = d[:, :2] / scale + (x0, y0)
    return FrameLandmarks(*parts, detected.pose_world)


def fuse_detections(detections: list[FrameLandmarks]) -> FrameLandmarks:
    """One detection from several of the same person: per part, the point-wise median over the
    detections that found the part (an outlier among three is outvoted; of two, the mean); a
    part none found stays empty. The pose is fused first (its metric 3D pose with it), and a
    crop's face or hand counts only where it is that pose's own (``own_parts``): a wide crop
    can take in a neighbour's hand."""
    with_pose = [d for d in detections if d.pose[:, 2].max() > 0] or detections[:1]
    pose = _median_of_found([d.pose for d in with_pose])
    world = np.median(np.stack([d.pose_world for d in with_pose]), axis=0)
    owned = zip(*(own_parts(pose, *d.image_parts[1:]) for d in detections), strict=True)
    return FrameLandmarks(pose, *(_median_of_found(list(part)) for part in owned), world)


def _median_of_found(part: list[np.ndarray]) -> np.ndarray:
    found = [points for points in part if points[:, 2].max() > 0]
    return np.median(np.stack(found), axis=0) if found else np.zeros_like(part[0])


def _fitted_points(tracker: Tracker, keypoints: Keypoints) -> list[np.ndarray]:
    """The fitted model's landmark sets projected into the image, in detector order."""
    fit = tracker.fit(keypoints)
    params = {k: torch.as_tensor(v) for k, v in fit.params.items()}
    with torch.no_grad():
        landmarks, _ = tracker.all_landmarks(params)
        out = []
        for name in PART_LANDMARKS.values():
            pixels = project(to_camera(landmarks[name], torch.as_tensor(fit.cam_t)),
                             torch.tensor(fit.focal), torch.tensor(fit.center))[0].numpy()
            # The fitted body predicts every part, also those the detector did not see.
            out.append(np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1))
    return out

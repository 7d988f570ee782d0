"""``pear-train pseudo-label``: PEAR's pseudo-labelling (paper Sec. 3.2) with our tracker as the
teacher. Each clip goes through the backend's recovery as ``backend fit`` runs it (detections,
the tracker over the clip, smoothing); then every frame the teacher fits well becomes a sample
in the synth shard format (``data/shards.py``): the person's crop (``crop_person`` around the
detections' box, opaque: alpha 255), every fitted parameter, the joints in the camera frame,
every keypoint set of the fitted body projected into normalized crop units, and the crop
camera, so ``training.forward.predict`` on the stored labels reproduces the stored keypoints.

Confidences are per part: a keypoint's is 1 when its part (body, face, each hand) was detected
in that frame and the fit's reprojection error on that part is at most ``max_error``, else 0.
A frame is dropped when nobody was found, the body was not detected, or the body's error is
above ``max_error``. Errors are in crop units (pixels / the crop's height), so the threshold
means the same for a person far away and close up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.body.asset import Asset
from backend.body.model import BodyModel
from backend.camera import project, to_camera
from backend.conventions import KEYPOINT_SEEN, MODEL_TO_CAMERA
from backend.regressor.crop_camera import crop_box, full_to_crop
from backend.results import ClipResults
from backend.tracking.tracker import PART_LANDMARKS

from .data.batch import Sample
from .data.shards import Manifest, SynthRecord, write_shards
from .errors import TrainingDataError
from .forward import JOINTS

PSEUDO_LABEL_VERSION = 1  # bump when the same footage would give other labels
DEFAULT_MAX_ERROR = 0.03  # crop units: ~8 px of the 256-pixel crop
REPORT = "pseudo_labels.json"
FITS = "fits"  # the teacher's result files, one per clip
_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def joint_part(name: str) -> str:
    """Which detected part vouches for a joint: a hand for its fingers, the face for the jaw
    and eyes, the body for the rest."""
    if any(finger in name for finger in _FINGERS):
        return "left_hand" if name.startswith("left") else "right_hand"
    if name == "jaw" or "eye" in name:
        return "face"
    return "pose"


@dataclass
class FrameLabel:
    """One kept frame's labels, without its crop (that comes from a second pass over the
    footage)."""

    frame: int  # position in the clip's results
    footage_frame: int  # index in the footage
    params: dict[str, np.ndarray]  # spec shapes, transl folded into cam_t
    cam_t: np.ndarray  # (3,)
    joints3d: np.ndarray  # (J, 3) camera frame
    keypoints2d: dict[str, np.ndarray]  # set -> (K, 3): crop units and the part's confidence
    box_center: tuple[float, float]
    box_height: float
    errors: dict[str, float]  # part -> reprojection error, crop units (detected parts)


@dataclass
class ClipReport:
    footage: str
    frames: int
    kept: int
    no_person: int  # no box or no body detected
    over_error: int  # the body's error above the threshold
    parts_untrusted: dict[str, int] = field(default_factory=dict)  # kept frames, part conf 0


def label_frames(results: ClipResults, model: BodyModel, max_error: float
                 ) -> tuple[list[FrameLabel], ClipReport]:
    """The teacher's labels of a fitted clip's frames, the poorly fitted ones dropped
    (``model``: the clip's body model in float64, so the labels are exact)."""
    frames = len(results.frames)
    params = {}
    for name, spec in model.spec.items():
        value = torch.as_tensor(np.asarray(results.params[name]), dtype=torch.float64)
        params[name] = value.expand(frames, *spec.shape) if spec.per == "subject" else value
    # The regressor predicts no translation: the camera carries it (transl is added last).
    rotation = torch.tensor(MODEL_TO_CAMERA, dtype=torch.float64)
    cam_t = torch.as_tensor(results.cam_t, dtype=torch.float64) + params["transl"] @ rotation.T
    params["transl"] = torch.zeros_like(params["transl"])
    with torch.no_grad():
        posed = model(params)
    points = {JOINTS: posed.joints, **posed.landmarks}
    pixels = {name: project(to_camera(p, cam_t), results.focal,
                            torch.tensor(results.center, dtype=torch.float64))
              for name, p in points.items()}
    boxes = torch.as_tensor(np.asarray(results.detections["boxes"], np.float64))
    centers, heights = crop_box(torch.nan_to_num(boxes))
    joint_parts = [joint_part(name) for name in model.joint_names]
    report = ClipReport(str(results.info.get("footage", "")), frames, 0, 0, 0,
                        dict.fromkeys(PART_LANDMARKS, 0))
    labels = []
    for t in range(frames):
        if torch.isnan(boxes[t]).any():
            report.no_person += 1
            continue
        center, height = centers[t], float(heights[t])
        errors = {}
        for part, landmark_set in PART_LANDMARKS.items():
            detected = np.asarray(results.detections[part][t])
            seen = detected[:, 2] > KEYPOINT_SEEN
            if seen.any():
                offsets = pixels[landmark_set][t][seen] - torch.as_tensor(detected[seen, :2])
                errors[part] = float(offsets.norm(dim=1).mean()) / height
        if "pose" not in errors:
            report.no_person += 1
            continue
        if errors["pose"] > max_error:
            report.over_error += 1
            continue
        trusted = {part: float(errors.get(part, np.inf) <= max_error) for part in PART_LANDMARKS}
        for part, value in trusted.items():
            report.parts_untrusted[part] += int(value == 0)
        set_parts = {landmark_set: part for part, landmark_set in PART_LANDMARKS.items()}
        keypoints = {}
        for name, projected in pixels.items():
            crop = (projected[t] - center) / height
            confidence = torch.tensor([trusted[part] for part in joint_parts] if name == JOINTS
                                      else [trusted[set_parts.get(name, "pose")]] * len(crop),
                                      dtype=torch.float64)
            keypoints[name] = torch.cat([crop, confidence[:, None]], 1).numpy().astype(
                np.float32)
        labels.append(FrameLabel(
            t, int(results.frames[t]),
            {name: value[t].numpy().astype(np.float32) for name, value in params.items()},
            cam_t[t].numpy().astype(np.float32),
            to_camera(posed.joints[t:t + 1], cam_t[t:t + 1])[0].numpy().astype(np.float32),
            keypoints, (float(center[0]), float(center[1])), height, errors))
    report.kept = len(labels)
    return labels, report


def record_of(index: int, label: FrameLabel, crop: np.ndarray, results: ClipResults,
              clip_name: str) -> SynthRecord:
    """A kept frame as a shard record: the opaque RGBA crop and the labels."""
    rgba = np.concatenate([crop, np.full((*crop.shape[:2], 1), 255, np.uint8)], 2)
    sample = Sample(image=rgba, focal=float(results.focal),
                    principal_point=(float(results.center[0]), float(results.center[1])),
                    box_center=label.box_center, box_height=label.box_height,
                    params=label.params, joints3d=label.joints3d, keypoints2d=label.keypoints2d,
                    mask=None, id=f"pseudo/{clip_name}:{label.footage_frame}")
    camera = full_to_crop(torch.as_tensor(label.cam_t, dtype=torch.float64)[None],
                          *(torch.tensor([value], dtype=torch.float64) for value in (
                              label.box_center, label.box_height, results.focal,
                              results.center)))
    return SynthRecord(index, sample, label.cam_t, camera[0].numpy().astype(np.float32),
                       (results.width, results.height), f"{clip_name}:{label.footage_frame}")


def fit_clip(footage: Path, asset: Asset, smooth: float = 1.0) -> ClipResults:
    """The tracker's fit of a clip, as ``backend fit`` makes it."""
    from backend.perception.frames import open_footage
    from backend.perception.holistic import feed
    from backend.pipeline.recovery import ClipRecovery

    source = open_footage(footage)
    recovery = ClipRecovery(source.width, source.height, asset, estimator="tracker")
    feed(recovery, source)
    results, _ = recovery.finish(source.fps, smooth=smooth)
    results.info["footage"] = str(footage)
    return results


def crops(footage: Path, labels: list[FrameLabel]) -> list[np.ndarray]:
    """The kept frames' person crops, from a second pass over the footage (so no frame is held
    longer than it takes to crop it)."""
    from backend.perception.frames import open_footage
    from backend.regressor.inference import crop_person

    wanted = {label.footage_frame: label for label in labels}
    found = {}
    for frame in open_footage(footage):
        if frame.index in wanted:
            label = wanted[frame.index]
            found[frame.index] = crop_person(frame.image, np.array(label.box_center),
                                             label.box_height)
    return [found[label.footage_frame] for label in labels]


def pseudo_label(footage: list[str | Path], out: str | Path, asset: Asset,
                 max_error: float = DEFAULT_MAX_ERROR, shard_size: int = 500,
                 smooth: float = 1.0) -> list[ClipReport]:
    """Fit each clip with the tracker, label its well-fitted frames and write them all as one
    shard folder ``out`` (readable by ``ShardSamples``, usable as ``data.train``) with
    ``manifest.json``, ``pseudo_labels.json`` (per clip: frames kept and dropped, and why) and
    the teacher's fits as result files in ``out/fits`` (``backend.results``: to inspect them,
    or to label them again with another threshold without fitting)."""
    from backend.perception.frames import open_footage
    from backend.results import save_results

    for path in footage:  # a missing or unreadable clip is named before hours of fitting
        open_footage(path)
    model = BodyModel(asset).double()
    out = Path(out)
    (out / FITS).mkdir(parents=True, exist_ok=True)
    records, reports = [], []
    for number, path in enumerate(map(Path, footage)):
        results = fit_clip(path, asset, smooth)
        save_results(results, out / FITS / f"{number:03d}-{path.stem}.npz")
        labels, report = label_frames(results, model, max_error)
        for label, crop in zip(labels, crops(path, labels), strict=True):
            records.append(record_of(len(records), label, crop, results, path.stem))
        reports.append(report)
    (out / REPORT).write_text(json.dumps({"teacher": "tracker", "max_error": max_error,
                                          "clips": [asdict(r) for r in reports]}, indent=1))
    if not records:
        raise TrainingDataError(
            f"no frame of {[str(p) for p in footage]} was kept (per clip: "
            f"{[(r.frames, r.no_person, r.over_error) for r in reports]} frames, without a "
            f"detected body, with the body's error above {max_error}): check the footage "
            "shows a person, or raise --max-error")
    manifest = Manifest(asset.asset_id, asset.spec_hash, 0, "train", len(records), shard_size,
                        "pseudo:tracker:" + ",".join(str(Path(p).resolve()) for p in footage),
                        PSEUDO_LABEL_VERSION)
    write_shards(out, manifest, lambda: records.__getitem__)
    return reports

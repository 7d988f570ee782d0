"""Synthetic clips with exact answers: the body model itself, moving smoothly, projected through
a known camera into 2D keypoints, with optional noise and dropped parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body.model import BodyModel
from ..body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..camera import MODEL_TO_CAMERA, principal_point, project, to_camera
from ..conventions import FOOT_JOINTS
from ..errors import InputError
from ..mocap.foot_planting import plant_feet
from ..mocap.retarget import leg_length
from .priors import hinge_axes
from .tracker import PART_LANDMARKS, Keypoints
from .world_bones import HIPS, crop_view


@dataclass
class SyntheticClip:
    keypoints: Keypoints
    params: dict[str, torch.Tensor]  # the true parameters (float64)
    cam_t: torch.Tensor
    focal: float
    joints: np.ndarray  # (T, J, 3) true posed joints, model frame
    vertices: np.ndarray  # (T, V, 3) true posed vertices, model frame
    # facial action -> its true track (T,) in [0, 1], for clips made with facial actions
    actions: dict[str, np.ndarray] | None = None


# Facial actions a face clip performs, each driving these ARKit blend shapes (both sides alike).
FACIAL_ACTIONS = {
    "jawOpen": ("jawOpen",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "browInnerUp": ("browInnerUp",),
    "browDown": ("browDownLeft", "browDownRight"),
    "mouthPucker": ("mouthPucker",),
}


def _smooth_noise(rng: np.random.Generator, frames: int, shape: tuple, scale: float
                  ) -> np.ndarray:
    """Zero-mean low-frequency motion with standard deviation ~``scale`` (smoothed noise)."""
    steps = rng.normal(size=(frames + 20, *shape))
    kernel = np.hanning(21)
    kernel /= kernel.sum()
    smooth = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, steps)
    smooth = smooth[:frames] * np.sqrt(1.0 / (kernel**2).sum())  # back to unit variance
    return scale * smooth


def _seen_landmarks(output, cam_t: torch.Tensor, focal: float, center: torch.Tensor,
                    noise_px: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Detector part -> (T, K, 2) pixels of the posed model's landmarks through the camera,
    with ``noise_px`` of Gaussian noise."""
    seen = {}
    for part, landmark_set in PART_LANDMARKS.items():
        pixels = project(to_camera(output.landmarks[landmark_set], cam_t), torch.tensor(focal),
                         center).numpy()
        seen[part] = pixels + rng.normal(0, noise_px, pixels.shape) if noise_px else pixels
    return seen


def walking_motion(model: BodyModel, frames: int, fps: float = 30.0, stride: float = 0.25,
                   knee_bend: float = 0.8, heading: float = 0.6) -> dict[str, np.ndarray]:
    """A procedural walk with planted feet, one stride a second, for ``make_clip``'s
    ``motion``: hips swing by ``stride`` rad either way, a knee bends (up to ``knee_bend``
    rad) while its leg swings forward, the ankles keep the feet level, the walker faces
    ``heading`` rad away from the camera, and the root travels so the lowest foot never
    slides and rests on the floor (y = 0 in model axes)."""
    names = model.joint_names
    phase = 2 * np.pi * np.arange(frames) / fps
    body = np.zeros((frames, 21, 3))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = -sign * stride * np.sin(phase)  # -x: the leg forward
        knee = knee_bend * np.maximum(0, sign * np.cos(phase))  # bent while swinging forward
        body[:, names.index(f"{side}_hip") - 1, 0] = hip
        body[:, names.index(f"{side}_knee") - 1, 0] = knee
        body[:, names.index(f"{side}_ankle") - 1, 0] = -(hip + knee)  # the foot stays level
    model = model.converted(torch.float64)
    params = model.default_params(frames)
    params["body_pose"] = torch.as_tensor(body)
    params["global_orient"] = torch.tensor([[0.0, heading, 0.0]]).expand(frames, 1, 3)
    with torch.no_grad():
        joints = model(params).joints.numpy()
    feet = joints[:, [names.index(n) for n in FOOT_JOINTS]]
    transl = np.zeros((frames, 3))
    for t in range(1, frames):
        planted = np.argmin(feet[t, :, 1])  # the lowest foot point carries the body
        transl[t, [0, 2]] = transl[t - 1, [0, 2]] + (feet[t - 1, planted, [0, 2]]
                                                      - feet[t, planted, [0, 2]])
    transl[:, 1] = -feet[:, :, 1].min(1)
    return {"global_orient": np.tile([0.0, heading, 0.0], (frames, 1)), "body_pose": body,
            "transl": transl - transl[0]}


def make_clip(model: BodyModel, frames: int = 30, seed: int = 0, noise_px: float = 0.0,
              drop_rate: float = 0.0, size: tuple[int, int] = (720, 1280),
              focal: float = 1100.0, betas_scale: float = 0.8,
              center: tuple[float, float] | None = None,
              motion: dict[str, np.ndarray] | None = None,
              world_noise_m: float | None = None, planted: bool = False) -> SyntheticClip:
    """A clip of ``frames`` frames (width, height = ``size``) with exact ground truth, seen
    through a camera of focal length ``focal`` and principal point ``center`` (pixels;
    default the image centre). The body moves by smoothed random turns of every joint, or as
    ``motion`` says (``global_orient`` (T, 3), ``body_pose`` (T, 21, 3) and optionally
    ``transl`` (T, 3), the root's travel in model axes at the mean shape's size, scaled to
    this body's legs; e.g.
    ``backend.mocap.poses.held_out_motion``; T >= frames). With ``world_noise_m``, the
    keypoints carry a metric 3D pose as MediaPipe's ``pose_world_landmarks`` would
    (``world_bones.py``: hip-centred, in the axes of a camera looking at the person), each
    point off by slowly varying noise of that many metres per axis (MediaPipe's own errors
    persist over frames). ``planted``: the motion's feet planted on this body
    (``mocap.foot_planting``: a capture retargeted onto it slides where its legs are not the
    performer's)."""
    rng = np.random.default_rng(seed)
    model = model.converted(torch.float64)
    params = {k: v.clone() for k, v in model.default_params(frames).items()}
    names = model.joint_names
    with torch.no_grad():
        rest_joints = model(model.default_params(1)).rest_joints[0]
    body = np.zeros((frames, 21, 3))
    for joint in range(1, 22):
        body[:, joint - 1] = _smooth_noise(rng, frames, (3,), 0.12) + rng.normal(0, 0.12, 3)
    for joint, axis in hinge_axes(rest_joints, names).items():
        flexion = 0.2 + 0.8 / (1 + np.exp(-_smooth_noise(rng, frames, (), 1.0)))  # 0.2..1.0
        body[:, joint - 1] = flexion[:, None] * axis.numpy()[None]
    params["body_pose"] = torch.as_tensor(body)
    params["global_orient"] = torch.as_tensor(_smooth_noise(rng, frames, (1, 3), 0.15))
    if motion is not None:
        if len(motion["body_pose"]) < frames:
            raise InputError(f"the motion has {len(motion['body_pose'])} frames, not {frames}")
        params["body_pose"] = torch.as_tensor(motion["body_pose"][:frames], dtype=torch.float64)
        params["global_orient"] = torch.as_tensor(
            motion["global_orient"][:frames, None], dtype=torch.float64)
    for hand in ("left_hand_pose", "right_hand_pose"):
        params[hand] = torch.as_tensor(np.abs(_smooth_noise(rng, frames, (15, 3), 0.15))
                                       * [0, 0, 1] * (1 if hand.startswith("left") else -1))
    params["betas"] = torch.as_tensor(rng.normal(0, 1.0, params["betas"].shape[1:]))[None]
    params["betas"] = params["betas"] * betas_scale
    if "expression" in params:
        expression = np.abs(_smooth_noise(rng, frames, params["expression"].shape[1:], 0.2))
        params["expression"] = torch.as_tensor(np.clip(expression, 0, 1))
    params["eye_pose"] = torch.as_tensor(_smooth_noise(rng, frames, (2, 3), 0.08))
    wander = _smooth_noise(rng, frames, (3,), 0.05)
    with torch.no_grad():
        output = model(params)
    if motion is not None and "transl" in motion:  # the performer's own travel instead
        # Retargeted at the mean shape's legs: strides as long as this body's legs, so its
        # planted feet stay planted.
        strides = (leg_length(lambda joint: output.rest_joints[0, names.index(joint)].numpy())
                   / leg_length(lambda joint: rest_joints[names.index(joint)].numpy()))
        wander = framed(strides * np.asarray(motion["transl"][:frames])
                        @ np.array(MODEL_TO_CAMERA).T)
    cam_t = torch.as_tensor(np.array([0.05, 0.25, 3.2]) + wander)
    if planted and motion is not None:
        params, cam_t, _ = plant_feet(model, params, cam_t, fps=30.0)
        with torch.no_grad():
            output = model(params)
    width, height = size
    center = torch.tensor(principal_point(width, height, center), dtype=torch.float64)
    parts = {}
    for part, pixels in _seen_landmarks(output, cam_t, focal, center, noise_px, rng).items():
        confidence = np.ones(pixels.shape[:2])
        if drop_rate and part != "pose":  # whole hands / faces go missing, as detectors do
            confidence[rng.uniform(size=frames) < drop_rate] = 0.0
        parts[part] = np.concatenate([pixels, confidence[..., None]], axis=-1)
    world = None
    if world_noise_m is not None:
        points = to_camera(output.landmarks[PART_LANDMARKS["pose"]], cam_t)
        points = points @ crop_view(points).transpose(1, 2)
        points = (points - points[:, list(HIPS)].mean(1, keepdim=True)).numpy()
        points = points + _smooth_noise(rng, frames, points.shape[1:], world_noise_m)
        world = np.concatenate([points, np.ones((*points.shape[:2], 1))], axis=-1)
    return SyntheticClip(Keypoints(parts, width, height, world=world), params, cam_t, focal,
                         output.joints.numpy(), output.vertices.numpy())


def framed(travel: np.ndarray) -> np.ndarray:
    """A performer's travel (T, 3), camera axes, shifted so the camera stays on the path's
    middle across the image and no nearer than where a clip starts (a walk toward the camera
    starts farther away instead of walking out of the frame and past the lens)."""
    middle = (travel.min(0) + travel.max(0)) / 2
    return travel - np.array([middle[0], middle[1], travel[:, 2].min()])


def turned(clip: SyntheticClip, degrees: float, frames: int) -> dict[str, torch.Tensor]:
    """The first ``frames`` frames of ``clip``'s parameters with the whole body turned
    ``degrees`` about its up axis in place (180: the same motion seen from behind)."""
    length = len(clip.cam_t)
    params = {name: value[:frames] if value.shape[0] == length else value
              for name, value in clip.params.items()}
    turn = torch.tensor([0.0, np.radians(degrees), 0.0], dtype=torch.float64)
    orient = params["global_orient"].double()
    rotation = axis_angle_to_matrix(turn) @ axis_angle_to_matrix(orient.reshape(-1, 3))
    params["global_orient"] = matrix_to_axis_angle(rotation).reshape(orient.shape).to(
        clip.params["global_orient"].dtype)
    return params


def _swells(rng: np.random.Generator, time: np.ndarray, kinds: tuple[str, ...]
            ) -> dict[str, np.ndarray]:
    """Expressions that swell and fade one after another (each 0.5-1.2 s, peaking at 0.4-0.9,
    0.1-0.3 s apart, the first starting in the first 0.3 s), of each of ``kinds`` in turn:
    antagonists (brows raised, brows lowered) given together never overlap, and a clip of 2 s
    or more has at least two swells."""
    tracks = {kind: np.zeros(len(time)) for kind in kinds}
    start, turn = rng.uniform(-0.3, 0.3), rng.integers(len(kinds))
    while start < time[-1]:
        length = rng.uniform(0.5, 1.2)
        phase = np.clip((time - start) / length, 0.0, 1.0)
        swell = rng.uniform(0.4, 0.9) * 0.5 * (1 - np.cos(2 * np.pi * phase))
        kind = kinds[turn % len(kinds)]
        tracks[kind] = np.maximum(tracks[kind], swell)
        start, turn = start + length + rng.uniform(0.1, 0.3), turn + 1
    return tracks


def _action_tracks(rng: np.random.Generator, frames: int, fps: float) -> dict[str, np.ndarray]:
    """Each of ``FACIAL_ACTIONS`` over time, in [0, 1]: swells (``_swells``; the brows either
    raised or lowered at a time) and quick blinks (~130 ms) about every 0.7 s."""
    time = np.arange(frames) / fps
    tracks = _swells(rng, time, ("browInnerUp", "browDown"))
    for action in FACIAL_ACTIONS:
        if action == "blink":
            closure = np.zeros(frames)
            for moment in rng.uniform(0, time[-1], max(1, round(time[-1] / 0.7))):
                closure += np.exp(-((time - moment) / 0.067) ** 2)
            tracks[action] = np.clip(closure, 0.0, 1.0)
        elif action not in tracks:
            tracks.update(_swells(rng, time, (action,)))
    return tracks


def face_clip(model: BodyModel, expression_names: list[str], frames: int = 60, seed: int = 3,
              noise_px: float = 1.0, size: tuple[int, int] = (1280, 720),
              focal: float = 1100.0, distance: float = 0.7) -> SyntheticClip:
    """A head-and-shoulders close-up (the face ``distance`` metres from the camera, arms down,
    head and neck turning) performing ``FACIAL_ACTIONS`` with known tracks, the rest of the
    face neutral; keypoints projected with ``noise_px`` noise, points outside the image
    unseen. Needs an asset whose expressions carry ARKit names."""
    missing = sorted({shape for shapes in FACIAL_ACTIONS.values() for shape in shapes}
                     - set(expression_names))
    if missing:
        raise InputError(f"the body model's expressions have no ARKit shapes {missing}: a face "
                         "clip needs an asset with named ARKit expressions (the open one)")
    rng = np.random.default_rng(seed)
    model = model.converted(torch.float64)
    params = model.default_params(frames)
    names = model.joint_names
    body = params["body_pose"]
    for joint, scale in (("neck", 0.15), ("head", 0.2)):
        body[:, names.index(joint) - 1] = torch.as_tensor(_smooth_noise(rng, frames, (3,), scale))
    for side, sign in (("left", -1.0), ("right", 1.0)):  # arms down from the T-pose
        body[:, names.index(f"{side}_shoulder") - 1, 2] = sign * 1.2
    params["eye_pose"] = torch.as_tensor(_smooth_noise(rng, frames, (2, 3), 0.05))
    params["betas"] = torch.as_tensor(rng.normal(0, 0.8, params["betas"].shape[1:]))[None]
    actions = _action_tracks(rng, frames, 30.0)
    expression = np.zeros((frames, len(expression_names)))
    for action, shapes in FACIAL_ACTIONS.items():
        for shape in shapes:
            expression[:, expression_names.index(shape)] = actions[action]
    params["expression"] = torch.as_tensor(expression)
    with torch.no_grad():
        output = model(params)
    # The face's middle a little above the image centre, ``distance`` in front of the camera.
    face = output.landmarks[PART_LANDMARKS["face"]].mean((0, 1))
    rotation = torch.tensor(MODEL_TO_CAMERA, dtype=torch.float64)
    cam_t = (torch.tensor([0.0, -0.03, distance], dtype=torch.float64)
             - rotation @ face).expand(frames, 3).clone()
    width, height = size
    center = torch.tensor(principal_point(width, height, None), dtype=torch.float64)
    parts = {}
    for part, pixels in _seen_landmarks(output, cam_t, focal, center, noise_px, rng).items():
        inside = ((pixels >= 0) & (pixels < [width, height])).all(-1)
        parts[part] = np.concatenate([pixels, inside[..., None].astype(float)], axis=-1)
    return SyntheticClip(Keypoints(parts, width, height), params, cam_t, focal,
                         output.joints.numpy(), output.vertices.numpy(), actions)


def rough_start(clip: SyntheticClip, seed: int = 0, rotation_noise: float = 0.15,
                depth_error: float = 0.1) -> dict[str, np.ndarray]:
    """Starting values like a regressor's estimate of ``clip``: the true per-frame values with
    independent per-frame errors (rotations off by ~``rotation_noise`` rad per axis, the
    camera ``depth_error`` of its distance away), for ``TrackerConfig.initial``."""
    rng = np.random.default_rng(seed)
    start = {}
    for name, value in clip.params.items():
        value = value.numpy()
        if value.shape[0] == 1:  # per subject: one value for every frame
            value = np.repeat(value, len(clip.cam_t), axis=0)
        noise = rotation_noise if name.endswith(("pose", "orient")) else 0.0
        start[name] = value + rng.normal(0, noise, value.shape) if noise else value.copy()
    cam_t = clip.cam_t.numpy()
    start["cam_t"] = cam_t * (1 + rng.normal(0, depth_error, (len(cam_t), 1)))
    return start

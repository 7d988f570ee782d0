"""The tracker: fit an EHM asset to a clip's 2D keypoints by batched optimization.

Per frame: global orientation, body and hand poses, expression, jaw, eyes, eyelids, camera
translation. Per clip: body shape, head shape, joint offsets, head scale and, optionally, focal
length. Staged like GUAVA's tracker: camera and root first, then the body, then hands and face,
each stage adding parameters and keypoints. The data term is a confidence-weighted robust
(Geman-McClure) reprojection error, in units of the person's height in the image (the face: of
its own size) so that it depends on neither resolution nor framing; priors (``priors.py``:
joint limits; ``backend.priors``: the pose prior learned from motion capture) keep poses human
and parts that were not seen at rest or following their neighbours in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.ndimage import median_filter

from ..body.errors import MissingLandmarkSets
from ..body.landmark_model import LandmarkModel
from ..body.model import BodyModel
from ..body.params import FACE_ACTION_PARAMS, subject_values
from ..camera import MODEL_TO_CAMERA, principal_point, project, to_camera
from ..compiling import CompiledOrEager
from ..conventions import FACE_BLENDSHAPES, FOOT_JOINTS, KEYPOINT_CONFIDENT, KEYPOINT_SEEN
from ..priors.mixture import MixtureDensity
from ..priors.pose_prior import load_pose_prior
from .contact import MIN_FRAMES, Ground, contact_cost, ground_and_contacts
from .optimizer_memory import OptimizerMemory
from .priors import angle_bounds, hinge_axes, joint_limit_loss, range_loss, rest_flexion
from .world_bones import world_bone_cost, world_targets

# Detector part -> the asset's landmark set for it.
PART_LANDMARKS = {
    "pose": "mediapipe_pose33",
    "face": "mediapipe_face478",
    "left_hand": "mediapipe_hand_left",
    "right_hand": "mediapipe_hand_right",
}
# BlazePose points that carry the root and camera: nose, shoulders, hips.
_TORSO = [0, 11, 12, 23, 24]
# BlazePose's face points (nose, eyes, ears, mouth): coarse beside the face mesh's 478 (on
# close-ups 11-39 px off where the mesh is within 3 px), so the face stage drops them in
# frames where the mesh was found and lets the mesh place the head.
_POSE_FACE = list(range(11))
_MIN_FACE_POINTS = 10  # a face mesh with fewer points found counts as not found
_FACE_MIN_SHARE = 0.4  # the face's unit is at least this share of the person's height
_SHOULDERS, _HIPS = (11, 12), (23, 24)
# Body spans whose length in the image gives the distance, longest (most reliable) first:
# shoulders-to-hips, shoulder to shoulder, eye to eye.
_SPANS = [(_SHOULDERS, _HIPS), ((11,), (12,)), ((2,), (5,))]
# The starting camera is a running median over this long (seconds) of each frame's own guess:
# on close-ups BlazePose's shoulders can collapse for a few frames as the head turns (3x
# narrower at confidence 1.0), and a depth started there (2.8 m for 1.0) lies beyond what the
# stages' steps bring back (docs/tracker.md, "The face"). A person's distance changes slowly,
# and a median keeps a steady approach to the camera while it drops such glitches.
_START_MEDIAN_S = 0.5


@dataclass
class Keypoints:
    """2D targets: part -> (T, K, 3) pixels + confidence (0 = not detected); and, when the
    detector gave them, ``world``: its metric 3D pose, (T, 33, 4) (``world_bones.py``), and
    ``face_scores``: its facial blendshape scores, (T, 52) in ``FACE_BLENDSHAPES`` order, NaN
    in frames it did not score."""

    parts: dict[str, np.ndarray]
    width: int
    height: int
    fps: float = 30.0
    world: np.ndarray | None = None
    face_scores: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return len(next(iter(self.parts.values())))


@dataclass
class TrackerConfig:
    # Steps of the three stages; None: ``DEFAULT_ITERATIONS`` when the contact stage runs (its
    # steps also finish the body's, so the body stage is shorter: docs/tracker.md, "Feet on
    # the ground"), else ``ITERATIONS_WITHOUT_CONTACT`` (``--no-contact``, or a clip too short
    # for contacts, such as one photograph).
    iterations: tuple[int, int, int] | None = None
    learning_rate: float = 0.02
    final_lr_fraction: float = 0.05
    # Robust scale per stage, as a fraction of each part's unit (``part_scales``).
    robust_sigma: tuple[float, float, float] = (0.5, 0.3, 0.1)
    part_weights: dict[str, float] = field(default_factory=lambda: {
        "pose": 1.0, "face": 0.5, "left_hand": 0.5, "right_hand": 0.5})
    smoothness: float = 1.0  # at 30 fps; scaled so the same motion costs the same at any rate
    # Facial actions (expression, jaw, eyelids) are faster than limbs (a blink closes and
    # opens in ~4 frames): their share of ``smoothness``.
    face_smoothness: float = 0.03
    # Their step size, a multiple of ``learning_rate``: weights run 0-1 in a few frames,
    # and the face stage is short.
    face_learning_rate: float = 3.0
    pose_prior: float = 1e-4
    hand_prior: float = 5e-3
    # The learned pose prior (``backend.priors``: Gaussian mixtures fitted to motion capture),
    # its negative log-likelihood per frame; 0 turns it off. Used when the body model has one.
    # 1e-3 by measurement on a held-out CMU clip (docs/tracker.md); the hands' mixture, fitted
    # to the finger model rather than captured hands, changed nothing there: off by default.
    learned_pose_prior: float = 1e-3
    learned_hand_prior: float = 0.0
    shape_prior: float = 1e-4
    # Expressions: a weak pull toward neutral (squared) and toward few actions at once
    # (absolute values: ARKit-style weights are mostly zero, and 2D landmarks alone let a
    # puffed cheek or a rolled lip stand in for detector noise). By measurement on a rendered
    # close-up with known facial actions (docs/tracker.md, "The face").
    expression_prior: float = 1e-4
    expression_sparsity: float = 3e-4
    # Both, this many times stronger in frames without the face mesh: BlazePose's two mouth
    # corners are no evidence for a facial action (1 px of noise on them moved a smile 0.2).
    unseen_face_prior: float = 10.0
    # The detector's facial blendshape scores (``Keypoints.face_scores``), where the body
    # model's expressions carry the same ARKit names: a squared pull of each weight toward
    # its score, per frame scored; 0 turns it off. 0.1 by measurement on three rendered
    # close-ups with known facial actions (mean r over six actions 0.64 -> 0.74; 0.03: 0.72,
    # 0.3 and 1.0 on one: below 0.1's), docs/tracker.md, "MediaPipe's blendshape scores".
    face_scores: float = 0.1
    # Limb directions from the detector's metric 3D pose (``world_bones.py``), per frame, and
    # the robust scale of their chord error (1.5: ~100 degrees, so a limb fitted the wrong way
    # round is still pulled back); 0 turns the term off. Used when the keypoints carry
    # ``world`` (results format 2 and later). Weight and scale by measurement (docs/tracker.md):
    # 0.5 scored better than 1.0 on each of two held-out CMU clips with MediaPipe-like errors
    # and on MediaPipe's own output on rendered frames, from the front and from behind; 0.2
    # scored better still on those and on four Human3.6M photographs (2026-12-03) but no
    # longer pulls a limb fitted behind the body back to the front.
    world_bones: float = 0.5
    world_sigma: float = 1.5
    # Feet on the ground (``contact.py``): after the other stages, the ground and each foot's
    # contacts are found from the fit, and this many more steps keep touching feet still and
    # every foot above the ground, at this weight per squared metre; 0 turns it off
    # (``--no-contact``).
    contact: float = 30.0
    contact_iterations: int = 350
    # The contact stage's step size, a multiple of ``learning_rate``, held (not decayed): the
    # other stages have converged, and pins settle over many small steps; a decaying step
    # stalled them halfway (docs/tracker.md, "Feet on the ground").
    contact_learning_rate: float = 0.1
    # The speeds (m/s) under which a fitted foot point starts and keeps touching the ground
    # (``contact.detect_contacts``): looser than a captured foot's 0.25 and 0.5, since the
    # fit's feet carry its noise (on the bench walk, 0.43 m/s at the median in the contacts
    # the stricter bounds missed; they found 60 % of the truth's contacts, these 84 %).
    contact_speeds: tuple[float, float] = (0.4, 0.6)
    offsets_prior: float = 100.0
    focal: float | None = None  # pixels; None: start from the image size
    center: tuple[float, float] | None = None  # principal point, pixels; None: image centre
    optimize_focal: bool = False
    # Per-subject parameters (betas, head shape, ...) held at these values instead of fitted:
    # later parts of a clip keep the body an earlier part found.
    subject: dict[str, np.ndarray] | None = None
    # Starting values instead of the rest pose (e.g. the regressor's): parameter name or
    # "cam_t" -> (T, ...) per frame; per-subject ones are averaged over the frames.
    initial: dict[str, np.ndarray] | None = None
    device: str | None = None  # None: CUDA when present
    # Each step's loss through ``torch.compile`` (``backend.compiling``): worth it where a
    # step is many small operations and the shapes repeat, as a live frame's (batch of one,
    # ~4x faster); a whole clip's fit would compile anew for every length.
    compile: bool = False


# Devices whose torch has a fused Adam (one kernel per parameter and step).
FUSED_ADAM_DEVICES = ("cpu", "cuda")
CONTACT_STAGE = "feet on the ground"  # the stage after the three, when ``contact`` is on

# Steps per stage when the contact stage follows, and when it does not (``--no-contact``, or
# fewer than ``contact.MIN_FRAMES`` frames): then the body stage gets the steps the contact
# stage would have given it (docs/tracker.md, "Feet on the ground").
DEFAULT_ITERATIONS = (80, 300, 200)
ITERATIONS_WITHOUT_CONTACT = (80, 500, 200)

# Steps per stage when starting from a regressor's estimate instead of the rest pose: the
# root and camera are already placed and the body nearly so (measured by `backend bench
# tracker`: the same accuracy as the full schedule from a start within ~0.15 rad).
REFINE_ITERATIONS = (20, 150, 100)


@dataclass
class FitResult:
    params: dict[str, np.ndarray]  # per-frame (T, ...) and per-clip (1, ...) values
    cam_t: np.ndarray  # (T, 3) camera-frame translation
    focal: float
    center: tuple[float, float]
    reprojection_px: dict[str, float]  # mean pixel error per part where detected
    stage_losses: list[float]  # the last step's loss of each stage that ran
    seconds: float
    # (T, 4) each of ``contact.FOOT_JOINTS`` touching the ground, when the contact stage ran
    contacts: np.ndarray | None = None


Progress = Callable[[str, int, int], None]


def _image_plane(points: torch.Tensor, cam_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, K, 3) model-frame points -> camera-frame x / z and y / z, each (T, K): ``project``
    and ``to_camera`` without focal and center, the constant rotation applied row by row
    (elementwise on (T, K) planes instead of a (T*K, 3) x (3, 3) product)."""
    coords = points.unbind(-1)
    camera = []
    for axis, row in enumerate(MODEL_TO_CAMERA):
        value = cam_t[:, axis, None]
        for weight, coord in zip(row, coords, strict=True):
            if weight == 1:
                value = value + coord
            elif weight == -1:
                value = value - coord
            elif weight:
                value = value + weight * coord
        camera.append(value)
    depth = camera[2].clamp_min(1e-3)
    return camera[0] / depth, camera[1] / depth


@torch.no_grad()
def reprojection_errors(landmarks: dict[str, torch.Tensor], cam_t: torch.Tensor,
                        focal: torch.Tensor | float, center: torch.Tensor,
                        parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean pixel error per detected part (confidence > ``KEYPOINT_SEEN``) of the model's
    landmark sets (model frame, (T, K, 3)) seen through the camera."""
    errors = {}
    for part, points in parts.items():
        if part not in PART_LANDMARKS:
            continue
        target = torch.as_tensor(points, dtype=torch.float32, device=cam_t.device)
        pixels = project(to_camera(landmarks[PART_LANDMARKS[part]].float(), cam_t.float()),
                         focal, center)
        seen = target[..., 2] > KEYPOINT_SEEN
        if seen.any():
            errors[part] = float((pixels - target[..., :2]).norm(dim=-1)[seen].mean())
    return errors


def check_landmark_sets(asset_id: str, sets: Iterable[str]) -> None:
    """Raise ``MissingLandmarkSets`` unless a body model has every landmark set the estimators
    fit and measure (``PART_LANDMARKS``)."""
    have = set(sets)
    missing = [name for name in PART_LANDMARKS.values() if name not in have]
    if missing:
        raise MissingLandmarkSets(
            f"body model {asset_id!r} has no MediaPipe landmark set(s) {missing}, which the "
            "estimators fit to the footage: reinstall it with `backend models install` (that "
            "carries them over from the free default model) or use the default body model "
            "'open'")


def part_scales(parts: dict[str, np.ndarray], image_height: float) -> dict[str, np.ndarray]:
    """The unit each part's reprojection error is measured in, per frame (T,), pixels: the
    person's height in the image (the extent of the pose points found; fallback 0.8 of the
    image) for the body and hands; for the face its own extent where found, but at least
    ``_FACE_MIN_SHARE`` of the person's. A smile or a blink moves the face's points by a share
    of the face's size, so on close-ups the face's evidence now balances the expression and
    head priors as it does nearer the camera (in the person's height it was 2-10x weaker);
    the floor keeps a full-body shot's small face from outweighing the body and pulling its
    shape (docs/tracker.md, "The face")."""
    pose = parts["pose"]
    heights = np.full(len(pose), image_height * 0.8)
    for t, points in enumerate(pose):
        seen = points[points[:, 2] > KEYPOINT_SEEN, :2]
        if len(seen) >= 4:
            heights[t] = max(np.ptp(seen[:, 1]), np.ptp(seen[:, 0]), 20.0)
    scales = {name: heights for name in parts}
    if "face" in parts:
        face = heights.copy()
        for t, points in enumerate(parts["face"]):
            seen = points[points[:, 2] > KEYPOINT_SEEN, :2]
            if len(seen) >= _MIN_FACE_POINTS:
                face[t] = max(np.ptp(seen[:, 1]), np.ptp(seen[:, 0]),
                              _FACE_MIN_SHARE * heights[t])
        scales["face"] = face
    return scales


class Tracker:
    def __init__(self, model: BodyModel, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        check_landmark_sets(model.asset_id, model.landmark_names)
        self.model = model.converted(torch.float32, device)
        # The first stages see only the body's points: computing just those halves a step.
        self.body_landmarks = LandmarkModel(self.model, [PART_LANDMARKS["pose"]])
        self.all_landmarks = LandmarkModel(self.model)
        self.device = torch.device(device)
        with torch.no_grad():
            rest = model(model.default_params(1))
        self.rest_joints = rest.rest_joints[0].cpu()
        self.rest_landmarks = {k: v[0].cpu() for k, v in rest.landmarks.items()}
        # Joint limits on the joints a pose parameter drives (the others stay at rest), in the
        # order of their parameters: ``local`` is then a concatenation, not a scatter.
        self.limited = [name for name in model.pose_joints if name != "global_orient"]
        order = [j for name in self.limited for j in model.pose_joints[name]]
        self.bounds = angle_bounds(model.joint_names)[order].to(device)
        axes = {j: a for j, a in hinge_axes(self.rest_joints, model.joint_names).items()
                if j in order}
        self.hinges = {order.index(j): a.to(device) for j, a in axes.items()}
        bent = rest_flexion(self.rest_joints, model.joint_names, axes)
        self.rest_bend = torch.tensor([bent[j] for j in axes], device=device)
        self.learned = self._learned_prior_weights(model.asset_id)
        self.feet = [model.joint_names.index(name) for name in FOOT_JOINTS]
        self._objective = (CompiledOrEager(self._step_loss, "the tracker's fitting step")
                           if self.config.compile else self._step_loss)

    @property
    def compiled(self) -> bool:
        """Steps run through ``torch.compile`` (``TrackerConfig.compile``, until a compile
        fails)."""
        return isinstance(self._objective, CompiledOrEager) and self._objective.compiled

    def _learned_prior_weights(self, asset_id: str) -> dict[str, tuple[float, MixtureDensity]]:
        """Part -> (weight, density) of the learned pose prior; empty without one."""
        c = self.config
        weights = {"body_pose": c.learned_pose_prior, "left_hand_pose": c.learned_hand_prior,
                   "right_hand_pose": c.learned_hand_prior}
        prior = load_pose_prior(asset_id) if any(weights.values()) else None
        if prior is None:
            return {}
        densities = prior.densities(torch.float32, self.device)
        return {name: (weight, densities[name]) for name, weight in weights.items() if weight}

    # -- setup --------------------------------------------------------------------------------

    def _targets(self, keypoints: Keypoints, center: np.ndarray
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per part (T, K, 3): (pixels - principal point ``center``) / the part's scale,
        confidence; and those scales (T,) per part: the person's height in the image for the
        body and hands, the face's own size for the face (``part_scales``)."""
        scales = part_scales(keypoints.parts, float(keypoints.height))
        # A point the detector gives at or below KEYPOINT_SEEN is its guess at something it
        # did not see (on close-ups, elbows and wrists below the frame 150-400 px off at
        # 0.03-0.17): not evidence.
        parts = {name: torch.as_tensor(np.concatenate(
            [(points[..., :2] - center) / scales[name][:, None, None],
             np.where(points[..., 2:] > KEYPOINT_SEEN, points[..., 2:], 0.0)],
            axis=-1), dtype=torch.float32, device=self.device)
            for name, points in keypoints.parts.items() if name in PART_LANDMARKS}
        return parts, {name: torch.as_tensor(scale, dtype=torch.float32, device=self.device)
                       for name, scale in scales.items()}

    @staticmethod
    def _face_found(targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """(T,) bool: frames where the face mesh was found."""
        if "face" not in targets:
            return torch.zeros(len(targets["pose"]), dtype=torch.bool,
                               device=targets["pose"].device)
        return (targets["face"][..., 2] > KEYPOINT_SEEN).sum(1) >= _MIN_FACE_POINTS

    @staticmethod
    def _face_over_pose(targets: dict[str, torch.Tensor], found: torch.Tensor
                        ) -> dict[str, torch.Tensor]:
        """``targets`` with the pose's face points unweighted in the frames where the face mesh
        was ``found`` ((T,) bool, ``_face_found``)."""
        if not found.any():
            return targets
        pose = targets["pose"].clone()
        pose[:, _POSE_FACE, 2] *= (~found).float()[:, None]
        return {**targets, "pose": pose}

    def _initial(self, keypoints: Keypoints, focal: float, center: np.ndarray
                 ) -> dict[str, torch.Tensor]:
        """Root and camera (focal length ``focal``, principal point ``center``): depth from the
        longest visible body span (torso, else shoulders, else eyes, for close-ups), a running
        median over ``_START_MEDIAN_S``; facing from the order of the shoulders."""
        frames = keypoints.frames
        pose = keypoints.parts["pose"]
        rotation = np.array(MODEL_TO_CAMERA)
        rest = self.rest_landmarks[PART_LANDMARKS["pose"]].numpy()
        cam_t = np.full((frames, 3), np.nan)
        facing_away = np.zeros(frames, bool)
        for t in range(frames):
            for first, second in _SPANS:
                ends = pose[t, list(first + second)]
                if (ends[:, 2] <= KEYPOINT_CONFIDENT).any():
                    continue
                length = np.linalg.norm(ends[: len(first), :2].mean(0)
                                        - ends[len(first):, :2].mean(0))
                rest_length = np.linalg.norm(rest[list(first)].mean(0) - rest[list(second)].mean(0))
                depth = focal * rest_length / max(length, 1.0)
                anchor = rest[list(first + second)].mean(0)
                point = np.array([*(ends[:, :2].mean(0) - center) * depth / focal, depth])
                cam_t[t] = point - rotation @ anchor
                break
            shoulders = pose[t, list(_SHOULDERS)]
            # The person's left shoulder on the image's left: their back is to the camera.
            facing_away[t] = ((shoulders[:, 2] > KEYPOINT_CONFIDENT).all()
                              and shoulders[0, 0] < shoulders[1, 0])
        known = ~np.isnan(cam_t[:, 0])
        if not known.any():  # no torso anywhere: a person standing 3 m away in the middle
            cam_t[:] = [0.0, 0.0, 3.0]
        else:
            for axis in range(3):
                cam_t[:, axis] = np.interp(np.arange(frames), np.flatnonzero(known),
                                           cam_t[known, axis])
            window = 2 * round(_START_MEDIAN_S * keypoints.fps / 2) + 1
            cam_t = median_filter(cam_t, size=(window, 1), mode="nearest")
        defaults = self.model.default_params(1)
        variables = {name: defaults[name].expand(
            frames if spec.per == "frame" else 1, *spec.shape).clone().to(self.device)
            for name, spec in self.model.spec.items() if name != "transl"}
        variables["global_orient"][facing_away, 0, 1] = np.pi
        variables["cam_t"] = torch.as_tensor(cam_t, dtype=torch.float32, device=self.device)
        variables["log_focal"] = torch.tensor(np.log(focal), dtype=torch.float32,
                                              device=self.device)
        return variables

    def _given_start(self, initial: dict[str, np.ndarray], frames: int
                     ) -> dict[str, torch.Tensor]:
        """``TrackerConfig.initial`` as variables (per-subject values averaged over frames)."""
        out = {}
        for name, value in initial.items():
            spec = self.model.spec.get(name)
            if name != "cam_t" and (spec is None or name == "transl"):
                continue  # e.g. a parameter another asset has: the default stays
            value = torch.as_tensor(np.asarray(value), dtype=torch.float32, device=self.device)
            shape = (3,) if spec is None else spec.shape
            if value.shape != (frames, *shape):
                raise ValueError(f"initial {name!r} has shape {tuple(value.shape)}, expected "
                                 f"{(frames, *shape)}")
            out[name] = value.mean(0, keepdim=True) if spec and spec.per == "subject" else value
        return out

    # -- losses -------------------------------------------------------------------------------

    def _params(self, v: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
        return {name: v[name].expand(frames, *v[name].shape[1:]) for name in self.model.spec
                if name in v}

    def _data_term(self, v, landmarks, targets, scales, parts, sigma: float) -> torch.Tensor:
        """``targets``: part -> (T, K, 3), (pixels - principal point) / the part's scale and
        confidence; ``landmarks``: the fitted body's landmark sets (``_landmarks``)."""
        total = 0.0
        for part, indices in parts.items():
            # Pixels from the principal point in the part's units: focal / scale * x / z.
            scale = v["log_focal"].exp() / scales[part][:, None]
            target = targets[part] if indices is None else targets[part][:, indices]
            points = landmarks[PART_LANDMARKS[part]]
            if indices is not None:
                points = points[:, indices]
            x, y = _image_plane(points, v["cam_t"])
            du = x * scale - target[..., 0]
            dw = y * scale - target[..., 1]
            squared = du.square() + dw.square()
            # Geman-McClure, scaled so a small residual always costs (r / fine)^2, ``fine``
            # being the last stage's sigma (the balance with the priors holds in every stage),
            # and an outlier (sigma / fine)^2: wide early stages let far points pull (a raised
            # arm the rest pose does not reach), the last one shrugs off outliers.
            fine = self.config.robust_sigma[-1]
            robust = squared / (sigma**2 + squared) * (sigma / fine) ** 2
            weight = self.config.part_weights[part] / max(points.shape[1], 1)
            total = total + weight * (target[..., 2] * robust).sum()
        return total

    def _world_term(self, v, landmarks, world: tuple[torch.Tensor, torch.Tensor],
                    depth_only: bool) -> torch.Tensor:
        """The fitted limbs' directions against the detector's metric pose (``world``: its
        ``world_targets``); ``depth_only``: only how far each limb points toward the camera."""
        points = to_camera(landmarks[PART_LANDMARKS["pose"]], v["cam_t"])
        cost = world_bone_cost(points, *world, self.config.world_sigma, depth_only)
        return self.config.world_bones * cost.sum()

    def _feet(self, joints: torch.Tensor, v) -> torch.Tensor:
        """(T, 4, 3) the ``FOOT_JOINTS`` in the camera frame, from model-frame joints."""
        return to_camera(joints[:, self.feet], v["cam_t"])

    @torch.no_grad()
    def _ground_and_contacts(self, v, frames: int, fps: float):
        """The ground under the fit so far and each foot point's contacts with it."""
        _, joints = self.body_landmarks(self._params(v, frames))
        feet = self._feet(joints, v).cpu().double().numpy()
        ground, contacts = ground_and_contacts(feet, v["global_orient"], fps,
                                               self.config.contact_speeds)
        return ground, torch.as_tensor(contacts, device=self.device)

    def _posed(self, v, parts, frames: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The landmark sets ``parts`` need and the joints, model frame."""
        needed = {PART_LANDMARKS[part] for part in parts}
        landmark_model = (self.body_landmarks if needed <= set(self.body_landmarks._names)
                          else self.all_landmarks)
        return landmark_model(self._params(v, frames))

    def _landmarks(self, v, parts, frames: int) -> dict[str, torch.Tensor]:
        return self._posed(v, parts, frames)[0]

    @torch.no_grad()
    def _errors(self, v, keypoints: Keypoints, center) -> dict[str, float]:
        landmarks = self._landmarks(v, PART_LANDMARKS, keypoints.frames)
        return reprojection_errors(landmarks, v["cam_t"], v["log_focal"].exp(), center,
                                   keypoints.parts)

    def _prior_term(self, v: dict[str, torch.Tensor], frames: int,
                    expression_weight: torch.Tensor) -> torch.Tensor:
        """``expression_weight``: (T,) the expression priors' factor per frame."""
        c = self.config
        spec = self.model.spec
        local = torch.cat([v[name].reshape(frames, -1, 3) for name in self.limited], dim=1)
        loss = joint_limit_loss(local, self.bounds, self.hinges, self.rest_bend)
        loss = loss + c.pose_prior * v["body_pose"].square().sum()
        for hand in ("left_hand_pose", "right_hand_pose"):
            loss = loss + c.hand_prior * v[hand].square().sum()
        for name, (weight, density) in self.learned.items():
            loss = loss - weight * density.log_likelihood(v[name].reshape(frames, -1)).sum()
        loss = loss + c.shape_prior * frames * v["betas"].square().sum()
        if "shape" in spec:
            loss = loss + c.shape_prior * frames * v["shape"].square().sum()
        if "expression" in spec:
            expression = v["expression"].reshape(frames, -1)
            loss = loss + (expression_weight[:, None] * (
                c.expression_prior * expression.square()
                + c.expression_sparsity * expression.abs())).sum()
            loss = loss + range_loss(v["expression"], *spec["expression"].range)
        loss = loss + c.offsets_prior * frames * v["joints_offset"].square().sum()
        if "head_scale" in spec:
            loss = loss + c.offsets_prior * frames * (v["head_scale"] - 1).square().sum()
        return loss

    def _temporal_term(self, v: dict[str, torch.Tensor], fps: float) -> torch.Tensor:
        loss = 0.0
        for name in [n for n, s in self.model.spec.items() if s.per == "frame"] + ["cam_t"]:
            value = v.get(name)
            if value is None or value.shape[0] < 3:
                continue
            flat = value.reshape(value.shape[0], -1)
            scale = (10.0 if name == "cam_t" else self.config.face_smoothness
                     if name in FACE_ACTION_PARAMS else 1.0)
            loss = loss + scale * (flat[2:] - 2 * flat[1:-1] + flat[:-2]).square().sum()
        # A second difference is acceleration x dt^2: weigh it by (fps/30)^4 so a given motion
        # is penalised alike at 12 or 60 fps.
        return self.config.smoothness * (fps / 30.0) ** 4 * loss

    def _score_targets(self, keypoints: Keypoints
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The detector's facial scores as targets for the expression weights of the same name:
        (expression columns (K,), scores (T, K), 1 where scored (T, K)); None without scores,
        or when no expression has an ARKit name (e.g. SMPL-X's PCA coefficients)."""
        names = self.model.expression_names
        if (keypoints.face_scores is None or not self.config.face_scores
                or "expression" not in self.model.spec):
            return None
        pairs = [(names.index(name), k) for k, name in enumerate(FACE_BLENDSHAPES)
                 if name in names]
        if not pairs:
            return None
        scores = np.asarray(keypoints.face_scores, np.float32)
        if scores.shape != (keypoints.frames, len(FACE_BLENDSHAPES)):
            raise ValueError(f"face_scores has shape {scores.shape}, expected "
                             f"{(keypoints.frames, len(FACE_BLENDSHAPES))}: a frame's "
                             "FACE_BLENDSHAPES scores per frame")
        columns, score_columns = (list(c) for c in zip(*pairs, strict=True))
        values = scores[:, score_columns]
        return (torch.as_tensor(columns, device=self.device),
                torch.as_tensor(np.nan_to_num(values), device=self.device),
                torch.as_tensor(np.isfinite(values), dtype=torch.float32, device=self.device))

    def _step_loss(self, v: dict[str, torch.Tensor], parts: dict[str, list[int] | None],
                   targets: dict[str, torch.Tensor], scales: dict[str, torch.Tensor],
                   world: tuple[torch.Tensor, torch.Tensor] | None, late: bool, sigma: float,
                   expression_weight: torch.Tensor, fps: float, frames: int,
                   feet_on: tuple[torch.Tensor, Ground] | None,
                   scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
                   ) -> torch.Tensor:
        """One step's loss: the data terms of ``parts`` at robust scale ``sigma``, the metric
        3D term, the feet's contacts (``feet_on``: contacts and ground), the facial scores
        (``scores``: ``_score_targets``) and the priors. ``late``: a stage after the body's."""
        landmarks, joints = self._posed(v, parts, frames)
        data = self._data_term(v, landmarks, targets, scales, parts, sigma)
        if world is not None:
            # Whole directions while the limbs find their side of the image plane; after that
            # only their depth, where the detector's ~19 degrees of noise would otherwise
            # outweigh pixel-exact 2D points (docs/tracker.md).
            data = data + self._world_term(v, landmarks, world, depth_only=late)
        if feet_on is not None:
            data = data + self.config.contact * contact_cost(self._feet(joints, v), *feet_on)
        if late and scores is not None:
            columns, target, scored = scores
            weights = v["expression"].reshape(frames, -1)[:, columns]
            data = data + self.config.face_scores * (scored * (weights - target).square()).sum()
        return (data + self._prior_term(v, frames, expression_weight)
                + self._temporal_term(v, fps))

    # -- the fit ------------------------------------------------------------------------------

    def fit(self, keypoints: Keypoints, progress: Progress | None = None,
            memory: OptimizerMemory | None = None) -> FitResult:
        """The fit of ``keypoints``; ``memory``: each stage's optimizer starts from the state
        the last fit given it ended with, and leaves its own there (a fit continuing another,
        such as a live frame's: ``optimizer_memory.py``)."""
        start = time.perf_counter()
        c = self.config
        focal = c.focal or float(max(keypoints.width, keypoints.height))
        center = np.array(principal_point(keypoints.width, keypoints.height, c.center))
        targets, scales = self._targets(keypoints, center)
        world = (world_targets(torch.as_tensor(keypoints.world, dtype=torch.float32,
                                               device=self.device))
                 if keypoints.world is not None and c.world_bones else None)
        v = self._initial(keypoints, focal, center)
        v.update(self._given_start(c.initial or {}, keypoints.frames))
        v.update({name: torch.as_tensor(value, device=self.device) for name, value in
                  subject_values(self.model.spec.values(), c.subject or {}).items()})
        frames = keypoints.frames
        per_frame_face = [n for n in ("expression", "jaw_pose", "eye_pose", "eyelids")
                          if n in self.model.spec]
        per_clip_face = [n for n in ("shape", "head_scale", "joints_offset")
                         if n in self.model.spec]
        stages = [
            ("camera and root", ["cam_t", "global_orient"], {"pose": _TORSO}),
            ("body", ["cam_t", "global_orient", "body_pose", "betas"]
             + (["log_focal"] if c.optimize_focal else []), {"pose": None}),
            ("hands and face", ["cam_t", "global_orient", "body_pose", "betas",
                                "left_hand_pose", "right_hand_pose", *per_frame_face,
                                *per_clip_face] + (["log_focal"] if c.optimize_focal else []),
             {part: None for part in targets}),
        ]
        contact_stage = bool(c.contact and c.contact_iterations and frames >= MIN_FRAMES)
        stage_steps = c.iterations or (DEFAULT_ITERATIONS if contact_stage
                                       else ITERATIONS_WITHOUT_CONTACT)
        schedule = list(zip(stages, stage_steps, c.robust_sigma, strict=True))
        early = {label for label, _, _ in stages[:2]}
        face_found = self._face_found(targets)
        fine = self._face_over_pose(targets, face_found)
        scores = self._score_targets(keypoints)
        expression_weight = torch.where(face_found, 1.0, c.unseen_face_prior)
        if contact_stage:
            # The body's shape stays as fitted: the feet move, not the legs' length.
            moving = [n for n in stages[-1][1] if self.model.spec.get(n) is None
                      or self.model.spec[n].per == "frame"]
            schedule.append(((CONTACT_STAGE, moving, stages[-1][2]),
                             c.contact_iterations, c.robust_sigma[-1]))
        stage_losses = []
        fixed = set(c.subject or ())
        contacts = None
        for (label, names, parts), iterations, sigma in schedule:
            if not iterations:  # a stage the schedule skips (e.g. a live frame's face)
                continue
            trainable = {name: v[name].requires_grad_(True) for name in names
                         if name not in fixed}
            optimizer = torch.optim.Adam([
                {"params": [tensor], "lr_scale": c.face_learning_rate
                 if name in FACE_ACTION_PARAMS else 1.0}
                for name, tensor in trainable.items()], lr=c.learning_rate,
                # One kernel per parameter for the update instead of ~8 dispatched operations:
                # 5 % of an offline fit, ~10 % of a live frame's (docs/tracker.md, "Speed").
                fused=self.device.type in FUSED_ADAM_DEVICES)
            if memory is not None:
                memory.restore(label, optimizer, trainable)
            for step in range(iterations):
                # Found twice: once the first pins have stilled the feet, contacts that the
                # fit's own noise cut short are found whole.
                if label == CONTACT_STAGE and step in (0, iterations // 2):
                    ground, contacts = self._ground_and_contacts(v, frames, keypoints.fps)
                rate = (c.learning_rate * c.contact_learning_rate if label == CONTACT_STAGE
                        else c.learning_rate * c.final_lr_fraction ** (step / iterations))
                for group in optimizer.param_groups:
                    group["lr"] = group["lr_scale"] * rate
                optimizer.zero_grad()
                loss = self._objective(
                    v, parts, targets if label in early else fine, scales, world,
                    label not in early, sigma, expression_weight, keypoints.fps, frames,
                    None if contacts is None else (contacts, ground), scores)
                loss.backward()
                optimizer.step()
                if progress and (step % 10 == 0 or step == iterations - 1):
                    progress(label, step + 1, iterations)
            if memory is not None:
                memory.keep(label, optimizer, trainable)
            for tensor in trainable.values():
                tensor.requires_grad_(False)
            stage_losses.append(float(loss.detach()))
        params = {name: v[name].detach().cpu().numpy() for name in self.model.spec if name in v}
        params["transl"] = np.zeros((frames, 3), np.float32)
        return FitResult(params=params, cam_t=v["cam_t"].detach().cpu().numpy(),
                         focal=float(v["log_focal"].exp()), center=tuple(center.tolist()),
                         reprojection_px=self._errors(v, keypoints, torch.tensor(
                             center, dtype=torch.float32, device=self.device)),
                         stage_losses=stage_losses,
                         seconds=time.perf_counter() - start,
                         contacts=None if contacts is None else contacts.cpu().numpy())

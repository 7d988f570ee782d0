"""A sample seen through another crop box, of a camera turned about the viewing ray through
that box's centre: the image warped once from the original crop, every label moved exactly.

Scale and translation augmentation change the crop box (centre and height in the full frame);
the camera (focal length, principal point) stays, so the CLIFF bookkeeping and every label
stay exact. Rotation augmentation turns the camera by an angle about the ray through the new
box's centre. A pure camera rotation maps the image by the homography ``K R K^-1`` whatever
the depth, so the warped image is an exact picture of the turned camera, the 2D keypoints map
exactly, and the camera-frame joints and the body's global orientation turn by ``R``: labels
that ``training.forward.predict`` reproduces from the true parameters (the camera translation,
which is no label, changes with them). Near the box centre the homography is a rotation by
the angle about that centre; away from the optical axis it also foreshortens slightly (what a
turned camera sees), unlike HMR2's 2D rotation about the crop centre with the 3D labels turned
about the optical axis, which disagree with each other for an off-centre crop.

A keypoint's confidence means "labelled and visible in the crop" (the synthetic renderer
labels points outside its crop 0), so points the new crop cuts off lose their label; points a
zoom-out brings in keep the 0 they had.

Pixel coordinates are continuous: pixel (i, j) covers [j, j+1] x [i, i+1], so the crop spans
x in [0, 192], y in [0, 256] and its centre is (96, 128) (the rasterizer's and
``backend.regressor.crop_camera``'s convention); OpenCV's pixel centres are at integers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

from backend.conventions import MODEL_TO_CAMERA
from backend.regressor.vit import INPUT_SIZE

from .batch import Sample

CROP_HEIGHT, CROP_WIDTH = INPUT_SIZE
CROP_CENTRE = np.array([CROP_WIDTH / 2, CROP_HEIGHT / 2])
_TO_OPENCV = np.array([[1.0, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # continuous -> OpenCV pixels


def crop_matrix(center: tuple[float, float] | np.ndarray, height: float) -> np.ndarray:
    """(3, 3): crop pixels of the box (``center``, ``height``) -> full-frame pixels."""
    step = height / CROP_HEIGHT
    origin = np.asarray(center, np.float64) - CROP_CENTRE * step
    return np.array([[step, 0, origin[0]], [0, step, origin[1]], [0, 0, 1]])


def intrinsics(focal: float, principal_point: tuple[float, float]) -> np.ndarray:
    return np.array([[focal, 0, principal_point[0]], [0, focal, principal_point[1]], [0, 0, 1]])


def ray_rotation(focal: float, principal_point: tuple[float, float],
                 pixel: tuple[float, float] | np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) camera-frame rotation by ``angle`` radians about the viewing ray through
    full-frame ``pixel`` (right-handed about the ray pointing away from the camera: on screen,
    y down, a positive angle turns the picture clockwise)."""
    ray = np.linalg.solve(intrinsics(focal, principal_point), [pixel[0], pixel[1], 1.0])
    return Rotation.from_rotvec(angle * ray / np.linalg.norm(ray)).as_matrix()


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a (3, 3) homography."""
    mapped = np.concatenate([points, np.ones((len(points), 1))], 1) @ matrix.T
    return mapped[:, :2] / mapped[:, 2:]


def warp_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The crop (H, W), (H, W, 3) or (H, W, 4) uint8 through ``matrix`` (crop pixels -> new
    crop pixels). RGBA is warped premultiplied, so the person's edge blends toward transparent,
    not toward whatever colour the renderer left under alpha 0; outside the source is
    transparent (RGBA) or black."""
    import cv2

    opencv = _TO_OPENCV @ matrix @ np.linalg.inv(_TO_OPENCV)
    size = (CROP_WIDTH, CROP_HEIGHT)
    if image.ndim == 2 or image.shape[2] != 4:
        return cv2.warpPerspective(image, opencv, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = image[..., 3:].astype(np.float32) / 255
    premultiplied = np.concatenate([image[..., :3] * alpha, image[..., 3:]], 2)
    warped = cv2.warpPerspective(premultiplied.astype(np.float32), opencv, size,
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
    alpha = warped[..., 3:] / 255
    colour = np.where(alpha > 0, warped[..., :3] / np.maximum(alpha, 1e-6), 0)
    return np.concatenate([colour, warped[..., 3:]], 2).clip(0, 255).round().astype(np.uint8)


def to_crop_pixels(keypoints: np.ndarray) -> np.ndarray:
    """(K, 2) normalized crop units -> crop pixels."""
    return keypoints * CROP_HEIGHT + CROP_CENTRE


def to_crop_units(pixels: np.ndarray) -> np.ndarray:
    return (pixels - CROP_CENTRE) / CROP_HEIGHT


def inside_crop(keypoints: np.ndarray) -> np.ndarray:
    """(K,) bool: which of (K, >=2) keypoints (normalized crop units) lie in the crop."""
    half = CROP_CENTRE / CROP_HEIGHT
    return (np.abs(keypoints[:, :2]) <= half).all(1)


def recrop(sample: Sample, center: tuple[float, float] | np.ndarray, height: float,
           angle: float = 0.0) -> Sample:
    """``sample`` through the crop box (``center``, ``height`` in full-frame pixels) of its
    camera turned by ``angle`` radians about the ray through ``center`` (``ray_rotation``);
    keypoints outside the new crop get confidence 0."""
    center = (float(center[0]), float(center[1]))
    rotation = ray_rotation(sample.focal, sample.principal_point, center, angle)
    camera = intrinsics(sample.focal, sample.principal_point)
    turn = camera @ rotation @ np.linalg.inv(camera)  # full-frame pixels of the turned camera
    matrix = (np.linalg.inv(crop_matrix(center, height)) @ turn
              @ crop_matrix(sample.box_center, sample.box_height))
    keypoints = {}
    for name, points in sample.keypoints2d.items():
        moved = to_crop_units(apply_homography(matrix, to_crop_pixels(points[:, :2])))
        keypoints[name] = np.concatenate([moved, points[:, 2:] * inside_crop(moved)[:, None]],
                                         1).astype(points.dtype)
    mask = None
    if sample.mask is not None:
        mask = warp_image(sample.mask.astype(np.uint8) * 255, matrix) >= 128
    params = dict(sample.params)
    if angle and "global_orient" in params:
        # x_cam = M x_model + t: turning the camera frame by R turns the model frame by M^T R M.
        to_camera = np.array(MODEL_TO_CAMERA)
        turned = Rotation.from_matrix(to_camera.T @ rotation @ to_camera)
        orient = np.asarray(params["global_orient"])
        params["global_orient"] = (turned * Rotation.from_rotvec(orient.reshape(-1, 3))
                                   ).as_rotvec().reshape(orient.shape).astype(orient.dtype)
    joints3d = sample.joints3d
    if joints3d is not None:
        joints3d = (joints3d @ rotation.T).astype(joints3d.dtype)
    return dataclasses.replace(
        sample, image=warp_image(sample.image, matrix), box_center=center,
        box_height=float(height), params=params, joints3d=joints3d, keypoints2d=keypoints,
        mask=mask)

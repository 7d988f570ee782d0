"""Filters, the offline smoother and elbow-twist compensation."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from backend.temporal.filters import OneEuroFilter, rts_smooth, smooth_rotations
from backend.temporal.twist import compensate_elbow_twist


def _noisy_sine(frames=200, noise=0.05, seed=0):
    t = np.linspace(0, 2 * np.pi, frames)
    clean = np.stack([np.sin(t), np.cos(2 * t)], axis=1)
    return clean, clean + np.random.default_rng(seed).normal(0, noise, clean.shape)


def test_strength_zero_is_off():
    _, noisy = _noisy_sine()
    np.testing.assert_array_equal(rts_smooth(noisy, 0.0), noisy)
    euro = OneEuroFilter(fps=30, strength=0.0)
    np.testing.assert_array_equal(np.stack([euro(x) for x in noisy]), noisy)


def test_smoothers_remove_noise_and_keep_the_motion():
    clean, noisy = _noisy_sine()
    raw_error = np.abs(noisy - clean).mean()
    smoothed = rts_smooth(noisy, 3.0)
    assert np.abs(smoothed - clean).mean() < 0.5 * raw_error
    euro = OneEuroFilter(fps=30, strength=1.0)
    online = np.stack([euro(x) for x in noisy])
    assert np.abs(online - clean)[20:].mean() < 0.9 * raw_error
    # Jitter (frame-to-frame acceleration) is what shows in animation: the filter removes most.
    def jitter(x):
        return np.abs(np.diff(x, 2, axis=0))[20:].mean()

    assert jitter(online) < 0.5 * jitter(noisy) and jitter(smoothed) < 0.1 * jitter(noisy)


def test_rotation_smoothing_handles_the_quaternion_sign_flip():
    angles = np.linspace(3.0, 3.3, 50)  # crosses pi, where axis-angle jumps
    rotations = np.stack([angles * 0, angles * 0, angles], 1)[:, None]
    wrapped = Rotation.from_rotvec(rotations.reshape(-1, 3)).as_rotvec().reshape(rotations.shape)
    smoothed = smooth_rotations(wrapped, 2.0)
    difference = Rotation.from_rotvec(smoothed.reshape(-1, 3)).inv() * Rotation.from_rotvec(
        rotations.reshape(-1, 3))
    assert difference.magnitude().max() < 0.05


def test_twist_moves_to_the_elbow_and_keeps_the_hand(open_model):
    rng = np.random.default_rng(0)
    names = open_model.joint_names
    rest = open_model().rest_joints[0].numpy()
    pose = rng.normal(0, 0.3, (6, 21, 3))
    wrist = names.index("left_wrist") - 1
    axis = rest[names.index("left_wrist")] - rest[names.index("left_elbow")]
    axis /= np.linalg.norm(axis)
    pose[:, wrist] = (Rotation.from_rotvec(pose[:, wrist])
                      * Rotation.from_rotvec(np.outer([0.5, 1.2, -0.8, 2.5, 0.1, -2.0], axis))
                      ).as_rotvec()
    fixed = compensate_elbow_twist(pose, rest, names)

    def posed(body_pose):
        with torch.no_grad():
            return open_model(body_pose=torch.as_tensor(body_pose))

    before, after = posed(pose), posed(fixed)
    # Joints and the hand's orientation are unchanged ...
    assert (before.joints - after.joints).abs().max() < 1e-9
    hand = names.index("left_index1")
    assert (before.joint_transforms[:, hand, :, :3]
            - after.joint_transforms[:, hand, :, :3]).abs().max() < 1e-9
    # ... and the wrist keeps at most the twist beyond 90 degrees.
    quaternion = Rotation.from_rotvec(fixed[:, wrist]).as_quat()
    twist = np.abs(2 * np.arctan2(quaternion[:, :3] @ axis, quaternion[:, 3]))
    twist = np.minimum(twist, 2 * np.pi - twist)
    original = Rotation.from_rotvec(pose[:, wrist]).as_quat()
    before_twist = np.abs(2 * np.arctan2(original[:, :3] @ axis, original[:, 3]))
    before_twist = np.minimum(before_twist, 2 * np.pi - before_twist)
    expected = np.maximum(before_twist - np.pi / 2, 0)
    np.testing.assert_allclose(twist, expected, atol=1e-6)


def test_the_smoother_holds_facial_actions_back_less_than_limbs(open_model):
    """A blink (closed ~4 frames) keeps nearly all of its closure; the same pulse on a joint
    angle is flattened more."""
    from backend.temporal.postprocess import postprocess

    frames = 60
    pulse = np.exp(-((np.arange(frames) - 30) / 2.0) ** 2)
    params = {k: v.numpy().repeat(frames, 0) if v.shape[0] == 1 else v.numpy()
              for k, v in open_model.default_params(frames).items()}
    params["expression"][:, 0] = pulse
    params["body_pose"][:, 0, 0] = pulse
    rest = open_model(open_model.default_params(1)).rest_joints[0].numpy()
    out, _ = postprocess(params, np.zeros((frames, 3)), open_model.spec, rest,
                         open_model.joint_names, strength=1.0)
    assert out["expression"][:, 0].max() > 0.93
    assert out["body_pose"][:, 0, 0].max() < 0.85

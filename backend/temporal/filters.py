"""Smoothing of per-frame signals (T, D): an online one-euro filter and an offline
Rauch-Tung-Striebel smoother; rotations are smoothed as sign-consistent quaternions.
Strength 0 returns the input unchanged."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


class OneEuroFilter:
    """Casiez et al.'s one-euro filter, vectorised over dimensions, for live streams: little lag
    on fast motion, strong smoothing when still. ``strength`` scales the smoothing (0 = off)."""

    def __init__(self, fps: float, strength: float = 1.0, min_cutoff: float = 1.0,
                 beta: float = 2.0, derivative_cutoff: float = 1.0):
        self.rate = fps
        self.strength = strength
        self.min_cutoff = min_cutoff / max(strength, 1e-9)
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self._value: np.ndarray | None = None
        self._derivative: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * rate)

    def __call__(self, value: np.ndarray, spacing: float | None = None) -> np.ndarray:
        """The filtered ``value``; ``spacing``: seconds since the previous value, when samples
        do not come at the filter's rate (a live source that dropped frames)."""
        value = np.asarray(value, dtype=float)
        if self.strength <= 0:
            return value
        if self._value is None:
            self._value, self._derivative = value, np.zeros_like(value)
            return value
        rate = self.rate if spacing is None else 1.0 / spacing
        derivative = (value - self._value) * rate
        a = self._alpha(self.derivative_cutoff, rate)
        self._derivative = a * derivative + (1 - a) * self._derivative
        cutoff = self.min_cutoff + self.beta * np.abs(self._derivative)
        a = self._alpha(cutoff, rate)
        self._value = a * value + (1 - a) * self._value
        return self._value


def rts_smooth(signal: np.ndarray, strength: float) -> np.ndarray:
    """Offline constant-velocity Kalman smoother over time (axis 0) of (T, D) values.

    ``strength`` is how many times more we trust the motion model than the per-frame values;
    0 returns the input unchanged.
    """
    signal = np.asarray(signal, dtype=float)
    if strength <= 0 or len(signal) < 3:
        return signal.copy()
    process = 1.0 / strength**2  # acceleration noise relative to measurement noise
    transition = np.array([[1.0, 1.0], [0.0, 1.0]])
    noise = process * np.array([[0.25, 0.5], [0.5, 1.0]])
    frames = len(signal)
    flat = signal.reshape(frames, -1)
    means = np.zeros((frames, 2, flat.shape[1]))
    covariances = np.zeros((frames, 2, 2))
    predicted_means = np.zeros_like(means)
    predicted_covariances = np.zeros_like(covariances)
    mean = np.stack([flat[0], np.zeros(flat.shape[1])])
    covariance = np.eye(2)
    for t in range(frames):  # the same gains apply to every dimension
        if t:
            mean = transition @ mean
            covariance = transition @ covariance @ transition.T + noise
        predicted_means[t], predicted_covariances[t] = mean, covariance
        gain = covariance[:, 0] / (covariance[0, 0] + 1.0)
        mean = mean + gain[:, None] * (flat[t] - mean[0])[None]
        covariance = covariance - np.outer(gain, covariance[0])
        means[t], covariances[t] = mean, covariance
    smoothed = means.copy()
    for t in range(frames - 2, -1, -1):
        gain = covariances[t] @ transition.T @ np.linalg.inv(predicted_covariances[t + 1])
        smoothed[t] = means[t] + gain @ (smoothed[t + 1] - predicted_means[t + 1])
    return smoothed[:, 0].reshape(signal.shape)


def smooth_rotations(axis_angle: np.ndarray, strength: float) -> np.ndarray:
    """Offline smoothing of (T, ..., 3) axis-angle rotations through quaternions."""
    if strength <= 0:
        return axis_angle.copy()
    shape = axis_angle.shape
    quaternions = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_quat().reshape(
        shape[0], -1, 4)
    # q and -q are the same rotation: keep each track on one side before averaging.
    for t in range(1, shape[0]):
        flip = (quaternions[t] * quaternions[t - 1]).sum(-1) < 0
        quaternions[t, flip] *= -1
    smoothed = rts_smooth(quaternions, strength)
    smoothed /= np.linalg.norm(smoothed, axis=-1, keepdims=True)
    return Rotation.from_quat(smoothed.reshape(-1, 4)).as_rotvec().reshape(shape)

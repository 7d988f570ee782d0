"""A Gaussian mixture with full covariances: fitted by EM in numpy (offline, seconds), scored in
torch (inside the tracker's loss, differentiable) and sampled in numpy (synthetic poses)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError


@dataclass(frozen=True)
class GaussianMixture:
    weights: np.ndarray  # (K,), summing to 1
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)

    @property
    def dimension(self) -> int:
        return self.means.shape[1]

    def density(self, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> MixtureDensity:
        """The mixture's log density as torch tensors, for losses (build it once per fit)."""
        cholesky = np.linalg.cholesky(self.covariances)
        log_norm = (np.log(self.weights) - np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(1)
                    - 0.5 * self.dimension * math.log(2 * math.pi))
        return MixtureDensity(*(torch.as_tensor(value, dtype=dtype, device=device) for value in
                                (self.means, np.linalg.inv(cholesky), log_norm)))

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """(count, D) draws."""
        components = rng.choice(len(self.weights), size=count, p=self.weights)
        cholesky = np.linalg.cholesky(self.covariances)
        noise = rng.standard_normal((count, self.dimension))
        return self.means[components] + np.einsum("nij,nj->ni", cholesky[components], noise)


@dataclass(frozen=True)
class MixtureDensity:
    means: torch.Tensor  # (K, D)
    whitening: torch.Tensor  # (K, D, D): inverse Cholesky factors of the covariances
    log_norm: torch.Tensor  # (K,): log weight + log normalizing constant

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of (..., D) points, (...), differentiable."""
        return torch.logsumexp(self.log_joint(x), dim=-1)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log(weight_k) + log N(x | component k) of (..., D) points, (..., K)."""
        if x.shape[-1] != self.means.shape[1]:
            raise InputError(f"a {self.means.shape[1]}-dimensional mixture cannot score points "
                             f"of shape {tuple(x.shape)}")
        white = torch.einsum("kij,...kj->...ki", self.whitening, x[..., None, :] - self.means)
        return self.log_norm - 0.5 * white.square().sum(-1)


def fit_gaussian_mixture(points: np.ndarray, components: int, seed: int = 0,
                         iterations: int = 300, regularization: float = 1e-4,
                         tolerance: float = 1e-6) -> GaussianMixture:
    """EM from a k-means++ start. ``regularization`` is added to every covariance's diagonal
    (in squared units of ``points``): a floor that keeps rarely moving dimensions, such as a
    joint the mocap never turns about one axis, from collapsing to zero width."""
    points = np.asarray(points, np.float64)
    count, dimension = points.shape
    if count < components * (dimension + 1):
        raise InputError(f"{count} points cannot fit {components} full {dimension}-dimensional "
                         f"Gaussians (need at least {components * (dimension + 1)})")
    rng = np.random.default_rng(seed)
    responsibilities = _kmeans_plus_plus_assignment(points, components, rng)
    previous = -np.inf
    for _ in range(iterations):
        mixture = _maximization(points, responsibilities, regularization)
        log_joint = _log_joint(points, mixture)  # (N, K)
        total = np.logaddexp.reduce(log_joint, axis=1)
        responsibilities = np.exp(log_joint - total[:, None])
        mean_log_likelihood = float(total.mean())
        if mean_log_likelihood - previous < tolerance:
            break
        previous = mean_log_likelihood
    return _maximization(points, responsibilities, regularization)


def mean_log_likelihood(mixture: GaussianMixture, points: np.ndarray) -> float:
    """Average log density of (N, D) points (per point, in nats)."""
    return float(np.logaddexp.reduce(_log_joint(np.asarray(points, np.float64), mixture),
                                     axis=1).mean())


def _kmeans_plus_plus_assignment(points: np.ndarray, components: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """One-hot (N, K) assignment of each point to the nearest of k-means++ seeds."""
    centers = [points[rng.integers(len(points))]]
    for _ in range(components - 1):
        distance = np.min([((points - c) ** 2).sum(1) for c in centers], axis=0)
        centers.append(points[rng.choice(len(points), p=distance / distance.sum())])
    nearest = np.argmin([((points - c) ** 2).sum(1) for c in centers], axis=0)
    return np.eye(components)[nearest]


def _maximization(points: np.ndarray, responsibilities: np.ndarray, regularization: float
                  ) -> GaussianMixture:
    mass = responsibilities.sum(0) + 1e-10
    means = responsibilities.T @ points / mass[:, None]
    covariances = np.empty((len(mass), points.shape[1], points.shape[1]))
    for k, mean in enumerate(means):
        offsets = points - mean
        covariances[k] = (responsibilities[:, k, None] * offsets).T @ offsets / mass[k]
        covariances[k] += regularization * np.eye(points.shape[1])
    return GaussianMixture(mass / mass.sum(), means, covariances)


def _log_joint(points: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """log(weight_k) + log N(x | k), (N, K), in float64 (the tracker's own formula)."""
    return mixture.density(torch.float64).log_joint(torch.from_numpy(points)).numpy()

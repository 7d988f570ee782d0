"""A linear shape basis for a model whose shapes are linear blend shapes of some coefficients.

PCA of sampled rest meshes, computed in coefficient space: with meshes x = t + c B, the vertex
covariance factors through the Gram matrix B B^T, so the principal directions come out as
coefficient vectors (exact anny coefficients for every basis vector) without ever forming the
sample meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ShapeBasis:
    mean_coeffs: np.ndarray  # (P,) coefficient vector of the mean shape
    component_coeffs: np.ndarray  # (K, P): coefficients of one standard deviation of each component
    explained_variance_ratio: np.ndarray  # (K,)
    total_components: int  # rank of the sampled shape space

    def coefficients(self, betas: np.ndarray) -> np.ndarray:
        """Blend-shape coefficients of the shapes ``betas`` (N, K) describe."""
        return self.mean_coeffs + betas @ self.component_coeffs


def fit_shape_basis(coeffs: np.ndarray, blendshapes: np.ndarray, num_components: int
                    ) -> ShapeBasis:
    """PCA of the meshes ``t + coeffs @ blendshapes``.

    coeffs: (N, P) sampled coefficients; blendshapes: (P, D) flattened displacement fields.
    Components are scaled to one standard deviation, so betas ~ N(0, 1) over the samples.
    """
    mean = coeffs.mean(0)
    centered = coeffs - mean
    gram = blendshapes @ blendshapes.T
    # A tiny ridge keeps the factorization defined if two blend shapes are (nearly) dependent.
    lower = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) / len(gram) * np.eye(len(gram)))
    _, singular, right = np.linalg.svd(centered @ lower, full_matrices=False)
    variance = singular**2 / len(coeffs)
    directions = np.linalg.solve(lower.T, right.T).T  # coefficient vectors of unit vertex norm
    k = min(num_components, len(variance))
    return ShapeBasis(
        mean_coeffs=mean,
        component_coeffs=directions[:k] * np.sqrt(variance[:k])[:, None],
        explained_variance_ratio=variance[:k] / variance.sum(),
        total_components=int((variance > 1e-12 * variance[0]).sum()),
    )


def project(basis: ShapeBasis, coeffs: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    """Least-squares betas of the meshes ``coeffs`` describe (vertex-space projection)."""
    components = basis.component_coeffs @ blendshapes  # (K, D)
    offsets = (coeffs - basis.mean_coeffs) @ blendshapes  # (N, D)
    return np.linalg.lstsq(components.T, offsets.T, rcond=None)[0].T

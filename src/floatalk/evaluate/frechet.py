"""Fréchet distance between two sets of features, each summarised by a Gaussian (FID, FVD, E-FID, P-FID).

FLOAT reports image quality (FID), video quality (FVD) and the realism of expression and head pose
(E-FID, P-FID) as the same statistic on different features (paper §5.3, Eq. 22):

    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})

with mu, S the mean and covariance (unbiased, 1/(n-1)) of the real and the generated features.

The trace of the matrix square root is computed as Tr((S_r S_g)^{1/2}) = sum_i sqrt(lambda_i) over the
eigenvalues of the symmetric positive semi-definite A S_g A, A = S_r^{1/2} (symmetric, from an
eigendecomposition): S_r S_g is similar to A S_g A, so their eigenvalues agree, and the symmetric form
has real, non-negative eigenvalues up to rounding (clipped at 0). Everything is float64 numpy. This is
the same number that scipy.linalg.sqrtm gives in the common implementations (pytorch-fid,
torch-fidelity) without their complex-part warnings on nearly singular covariances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GaussianStats", "frechet_distance", "frechet_distance_from_stats", "gaussian_stats"]


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and unbiased covariance (D, D) of n feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """(n, D) features -> their mean and unbiased covariance; needs n >= 2 finite rows."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (n, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity")
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    return GaussianStats(mean, cov, x.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_stats(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Eq. 22 for two Gaussians N(mean_a, cov_a), N(mean_b, cov_b): means (D,), covariances (D, D)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mean_a.size,) * 2:
        raise ValueError(
            f"mismatched statistics: means {mean_a.shape} and {mean_b.shape}, "
            f"covariances {cov_a.shape} and {cov_b.shape}"
        )
    root_a = _psd_sqrt(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0.0, None)).sum())
    diff = mean_a - mean_b
    value = float(diff @ diff) + float(np.trace(cov_a)) + float(np.trace(cov_b)) - 2.0 * trace_sqrt
    return max(value, 0.0)  # rounding can take identical sets a hair below 0


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Eq. 22 between two sets of feature vectors (n_a, D) and (n_b, D)."""
    a, b = gaussian_stats(features_a), gaussian_stats(features_b)
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    return frechet_distance_from_stats(a.mean, a.cov, b.mean, b.cov)

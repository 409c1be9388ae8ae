"""Frechet distance between Gaussians fitted to feature sets, in float64 on the host.

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

With an independent classifier's penultimate features this is a data-set-specific FID; with
Inception-v3 pool features (weights supplied by the user: nothing here downloads) it is the
usual FID. The matrix square root follows the common FID code (pytorch-fid, TTUR): scipy's
`sqrtm` of S_1 S_2, retried with `eps` added to both diagonals when the product is singular, and
the real part kept when the imaginary part is numerical noise.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] (unbiased, float64) of features [N, F]."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features: expected [N >= 2, F], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(
        features.shape[1], features.shape[1]
    )


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # Singular products are handled by the caller.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        result = scipy.linalg.sqrtm(matrix)
    return result[0] if isinstance(result, tuple) else result  # Older scipy: (sqrtm, errest).


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
    imag_tolerance: float = 1e-3,
) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
      mu1, mu2: means [F].
      sigma1, sigma2: covariances [F, F] (symmetric positive semi-definite).
      eps: diagonal offset used only when sqrtm(sigma1 @ sigma2) is not finite.
      imag_tolerance: largest |imaginary part| on the diagonal of the square root accepted as
        rounding noise; beyond it a ValueError is raised.

    Returns:
      The distance as a Python float (float64 arithmetic throughout).
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"shapes differ: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    if sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"sigma shape {sigma1.shape} does not match mu shape {mu1.shape}")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > imag_tolerance:
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has imaginary component {largest}")
        covmean = covmean.real
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(distance)


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features1 [N1, F] and features2 [N2, F]."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))

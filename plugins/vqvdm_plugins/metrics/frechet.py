"""Gaussian fits of feature sets and the Fréchet distance between them (FID/FVD), in float64.

``d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr( (S_1 S_2)^{1/2} )``

The only delicate term is ``tr((S_1 S_2)^{1/2})``. ``S_1 S_2`` is not symmetric, and a general
``sqrtm`` of it (scipy's Schur method, used by StyleGAN-V and pytorch-fid) can return complex values
or lose accuracy when the covariances are rank-deficient (fewer samples than feature dimensions).
We use the symmetric identity instead: with ``A = S_1^{1/2}`` (symmetric PSD),
``S_1 S_2 = A (A S_2 A) A^{-1}`` is similar to ``A S_2 A``, which is symmetric PSD, so

``tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(A S_2 A))``

computed with two symmetric eigendecompositions (``eigh``), clamping round-off negatives to zero.
This is the TensorFlow-GAN formulation TATS uses, but with ``eigh`` in float64 instead of an SVD in
float32. The result is checked against ``scipy.linalg.sqrtm`` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianFit", "fit_gaussian", "sqrtm_psd", "trace_sqrt_product", "frechet_distance"]


@dataclass(frozen=True)
class GaussianFit:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``count`` feature vectors, float64."""

    mean: Tensor
    cov: Tensor
    count: int


def fit_gaussian(features: Tensor, *, unbiased: bool = True) -> GaussianFit:
    """Fit ``(N, D)`` features with a Gaussian in float64 (covariance divides by ``N-1`` if unbiased)."""
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    n = features.shape[0]
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {n}")
    x = features.detach().to(torch.float64)
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (n - 1 if unbiased else n)
    return GaussianFit(mean=mean, cov=cov, count=n)


def _symmetrize(mat: Tensor) -> Tensor:
    return 0.5 * (mat + mat.transpose(-1, -2))


def sqrtm_psd(mat: Tensor) -> Tensor:
    """Principal square root of a symmetric positive semi-definite matrix (float64, via ``eigh``).

    Tiny negative eigenvalues from round-off are clamped to zero.
    """
    m = _symmetrize(mat.to(torch.float64))
    eigvals, eigvecs = torch.linalg.eigh(m)
    root = eigvals.clamp_min(0.0).sqrt()
    return _symmetrize((eigvecs * root) @ eigvecs.transpose(-1, -2))


def trace_sqrt_product(cov_a: Tensor, cov_b: Tensor) -> Tensor:
    """``tr((cov_a @ cov_b)^{1/2})`` for symmetric PSD ``cov_a``, ``cov_b`` (float64 scalar)."""
    root_a = sqrtm_psd(cov_a)
    middle = _symmetrize(root_a @ cov_b.to(torch.float64) @ root_a)  # A S_b A: symmetric PSD
    return torch.linalg.eigvalsh(middle).clamp_min(0.0).sqrt().sum()


def frechet_distance(a: GaussianFit, b: GaussianFit) -> float:
    """Squared Fréchet (2-Wasserstein) distance between two Gaussian fits."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {tuple(a.mean.shape)} vs {tuple(b.mean.shape)}")
    diff = a.mean.to(torch.float64) - b.mean.to(torch.float64)
    cov_a, cov_b = a.cov.to(torch.float64), b.cov.to(torch.float64)
    value = diff.dot(diff) + torch.trace(cov_a) + torch.trace(cov_b) - 2.0 * trace_sqrt_product(cov_a, cov_b)
    # The exact value is >= 0; round-off can leave a tiny negative for identical sets.
    return max(float(value), 0.0)

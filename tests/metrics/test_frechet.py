"""Fréchet distance and its matrix square root against scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from vqvdm_plugins.metrics.frechet import fit_gaussian, frechet_distance, sqrtm_psd, trace_sqrt_product


def random_spd(dim: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((dim, rank))
    return a @ a.T / rank


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook FID formula with scipy's general sqrtm (pytorch-fid / StyleGAN-V style)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_sqrtm_psd_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    mat = random_spd(24, 40, rng)
    ours = sqrtm_psd(torch.from_numpy(mat)).numpy()
    np.testing.assert_allclose(ours, scipy.linalg.sqrtm(mat).real, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours @ ours, mat, rtol=1e-10, atol=1e-12)


def test_trace_sqrt_product_matches_scipy_sqrtm_of_product():
    rng = np.random.default_rng(1)
    a, b = random_spd(16, 30, rng), random_spd(16, 30, rng)
    expected = np.trace(scipy.linalg.sqrtm(a @ b)).real
    assert float(trace_sqrt_product(torch.from_numpy(a), torch.from_numpy(b))) == pytest.approx(expected, rel=1e-9)


def test_fit_gaussian_matches_numpy_mean_and_unbiased_cov():
    x = np.random.default_rng(2).standard_normal((50, 6)) * 3 + 1
    fit = fit_gaussian(torch.from_numpy(x).float())
    np.testing.assert_allclose(fit.mean.numpy(), x.astype(np.float32).mean(0), rtol=1e-5)
    np.testing.assert_allclose(fit.cov.numpy(), np.cov(x.astype(np.float32), rowvar=False), rtol=1e-5, atol=1e-6)
    assert fit.mean.dtype == torch.float64 and fit.count == 50


@pytest.mark.parametrize("n, dim", [(400, 12), (30, 48)])  # well-conditioned, and rank-deficient (N < D)
def test_frechet_distance_matches_scipy_reference(n: int, dim: int):
    rng = np.random.default_rng(n + dim)
    x = rng.standard_normal((n, dim))
    y = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) * 0.5 + 0.7
    ours = frechet_distance(fit_gaussian(torch.from_numpy(x)), fit_gaussian(torch.from_numpy(y)))
    assert ours == pytest.approx(scipy_frechet(x, y), rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_a_shifted_set_is_the_squared_shift():
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert frechet_distance(fit_gaussian(x), fit_gaussian(x)) == pytest.approx(0.0, abs=1e-9)
    shift = torch.linspace(-1, 1, 10, dtype=torch.float64)
    expected = float((shift ** 2).sum())
    assert frechet_distance(fit_gaussian(x), fit_gaussian(x + shift)) == pytest.approx(expected, rel=1e-9)

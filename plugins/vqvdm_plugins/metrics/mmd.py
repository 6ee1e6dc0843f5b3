"""Unbiased polynomial-kernel MMD^2 (KID / KVD), over the whole sets or averaged over subsets.

Kernel (the one KID, TATS and StyleGAN-V use; sklearn's ``polynomial_kernel`` defaults):
``k(x, y) = (gamma <x, y> + coef0)^degree`` with ``degree = 3``, ``gamma = 1 / D``, ``coef0 = 1``.

Unbiased estimator of MMD^2 between samples ``X`` (m) and ``Y`` (n) (Gretton et al. 2012, Eq. 3):

``sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1)) - 2 sum_{i,j} k(x_i, y_j) / (mn)``

Because it is unbiased for every sample size, the mean over random subsets (KID's convention:
100 subsets of 1000) has the same expectation as the full-set value (TATS's convention); subsets
add a spread estimate and bound the cost. It can be slightly negative when the sets match.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["polynomial_kernel", "polynomial_mmd", "subset_polynomial_mmd"]


def polynomial_kernel(x: Tensor, y: Tensor, *, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> Tensor:
    """``(gamma x y^T + coef0)^degree`` for ``(m, D)`` and ``(n, D)`` -> ``(m, n)``; ``gamma=None``: ``1/D``."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (gamma * (x @ y.T) + coef0) ** degree


def polynomial_mmd(x: Tensor, y: Tensor, *, degree: int = 3, gamma: float | None = None,
                   coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between ``(m, D)`` and ``(n, D)`` feature sets, computed in float64."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (m, D) and (n, D) features, got {tuple(x.shape)} and {tuple(y.shape)}")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    k_xx = polynomial_kernel(x, x, degree=degree, gamma=gamma, coef0=coef0)
    k_yy = polynomial_kernel(y, y, degree=degree, gamma=gamma, coef0=coef0)
    k_xy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def subset_polynomial_mmd(x: Tensor, y: Tensor, *, subset_size: int | None, num_subsets: int,
                          seed: int = 0, degree: int = 3, gamma: float | None = None,
                          coef0: float = 1.0) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD^2 over ``num_subsets`` random subsets.

    Each subset draws ``min(subset_size, m, n)`` rows of each set without replacement (subsets are
    independent of each other), from a generator seeded with ``seed``. ``subset_size=None`` with
    ``num_subsets=1`` is the full-set value (std 0).
    """
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    m, n = x.shape[0], y.shape[0]
    if subset_size is None and num_subsets == 1:
        return polynomial_mmd(x, y, degree=degree, gamma=gamma, coef0=coef0), 0.0
    size = min(subset_size or min(m, n), m, n)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        ix = torch.randperm(m, generator=generator)[:size].to(x.device)
        iy = torch.randperm(n, generator=generator)[:size].to(y.device)
        values.append(polynomial_mmd(x[ix], y[iy], degree=degree, gamma=gamma, coef0=coef0))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(values) > 1 else 0.0

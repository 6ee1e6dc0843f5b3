"""Polynomial-kernel unbiased MMD (KVD) against a direct double-loop implementation."""

from __future__ import annotations

import itertools

import pytest
import torch

from vqvdm_plugins.metrics.mmd import polynomial_mmd, subset_polynomial_mmd


def loop_mmd(x: list[list[float]], y: list[list[float]]) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out term by term."""
    d = len(x[0])

    def k(a, b):
        return (sum(p * q for p, q in zip(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_polynomial_mmd_matches_loop_implementation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randn(7, 5, generator=g, dtype=torch.float64) * 1.5 + 0.3
    assert polynomial_mmd(x, y) == pytest.approx(loop_mmd(x.tolist(), y.tolist()), rel=1e-12)


def test_subset_mmd_averages_the_loop_value_of_each_drawn_subset():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(10, 4, generator=g, dtype=torch.float64) + 0.5
    mean, std = subset_polynomial_mmd(x, y, subset_size=6, num_subsets=5, seed=7)
    # Replay the documented draws: per subset, randperm(m)[:size] then randperm(n)[:size].
    replay = torch.Generator().manual_seed(7)
    values = []
    for _ in range(5):
        ix = torch.randperm(12, generator=replay)[:6]
        iy = torch.randperm(10, generator=replay)[:6]
        values.append(loop_mmd(x[ix].tolist(), y[iy].tolist()))
    t = torch.tensor(values, dtype=torch.float64)
    assert mean == pytest.approx(float(t.mean()), rel=1e-10)
    assert std == pytest.approx(float(t.std(unbiased=False)), rel=1e-8)


def test_single_full_subset_is_the_full_set_value():
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = x + 1.0
    assert subset_polynomial_mmd(x, y, subset_size=None, num_subsets=1) == (polynomial_mmd(x, y), 0.0)


def test_mmd_is_near_zero_for_samples_of_one_distribution_and_large_for_different_ones():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    same = polynomial_mmd(x, y)
    different = polynomial_mmd(x, y + 1.0)
    assert abs(same) < 0.05 * different
    assert different > 0

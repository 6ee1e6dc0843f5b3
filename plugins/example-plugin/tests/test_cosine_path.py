"""Tests of the cosine_path schedule plug-in, runnable against an installed copy: `pytest tests`.

Gaussian data N(mu, s^2) has a closed-form exact denoiser on any Gaussian path, and a closed-form
probability-flow ODE solution, so each sampler's error on the third-party path is measured exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import UserError
from vqvdm_core.interfaces.sampler import run_sampler
from vqvdm_core.registry import Registry, conformance_problem
from vqvdm_example_plugin import CosinePath

MU, S = 0.7, 0.3


def oracle(schedule, prediction_type, calls=None):
    def model_fn(x_t, t):  # the exact denoiser of N(MU, S^2) data on the path
        if calls is not None:
            calls.append(float(t[0]))
        alpha, sigma = (v.to(x_t.dtype)[:, None] for v in schedule.alpha_sigma(t))
        x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
        eps = (x_t - alpha * x0) / sigma
        return schedule.training_target(x0, eps, t, prediction_type)
    return model_fn


def test_the_entry_point_is_installed_and_the_class_conforms():
    registry = Registry()
    entry = registry.entry("schedule", "cosine_path")
    assert entry.distribution == "vqvdm-example-plugin"
    assert registry.load("schedule", "cosine_path") is CosinePath
    assert conformance_problem("schedule", CosinePath) is None


@pytest.mark.parametrize("sampler, order", [("ddim", 1), ("euler", 1), ("dpmpp_2m", 2), ("unipc", 2), ("heun", 2)])
def test_every_ode_sampler_converges_to_the_exact_ode_solution_on_the_path(sampler, order):
    schedule = create("schedule", "cosine_path")
    start = torch.randn((256, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MU + S * start  # from pure noise (alpha = 0) the ODE keeps the standardised value

    def error(steps):
        out = run_sampler(create("sampler", sampler), oracle(schedule, "v"), schedule, prediction_type="v",
                          x=start.clone(), steps=steps)
        return (out - exact).abs().max().item()

    coarse, fine = error(10), error(200)
    assert fine < coarse / 10  # 20x the levels: a first-order error falls ~20x, a second-order one more
    assert fine < (0.015 if order == 1 else 2e-3)


def test_ancestral_sampling_draws_the_data_distribution():
    schedule = create("schedule", "cosine_path")
    out = run_sampler(create("sampler", "ddpm"), oracle(schedule, "velocity"), schedule,
                      prediction_type="velocity", shape=(20_000, 1), steps=200,
                      generator=torch.Generator().manual_seed(1))
    assert out.mean().item() == pytest.approx(MU, abs=0.01) and out.std().item() == pytest.approx(S, abs=0.01)


def test_an_epsilon_denoiser_is_refused_from_pure_noise_before_any_call():
    schedule, calls = create("schedule", "cosine_path"), []
    with pytest.raises(UserError, match="alpha = 0"):
        run_sampler(create("sampler", "ddim"), oracle(schedule, "epsilon", calls), schedule,
                    prediction_type="epsilon", shape=(4, 1), steps=10)
    assert calls == []
    below = create("schedule", "cosine_path", t_max=0.98)
    out = run_sampler(create("sampler", "ddim"), oracle(below, "epsilon"), below, prediction_type="epsilon",
                      shape=(4, 1), steps=10)
    assert torch.isfinite(out).all()


def test_the_chain_keeps_its_first_level_and_ends_before_the_clean_end():
    chain = create("schedule", "cosine_path").chain(4)
    assert chain.timesteps == (1000.0, 750.0, 500.0, 250.0)
    assert chain.alpha(0) == 0.0 and chain.sigma(0) == 1.0 and chain.sigma(4) == 0.0
    assert chain.sigma(3) == pytest.approx(math.sin(math.pi / 8))

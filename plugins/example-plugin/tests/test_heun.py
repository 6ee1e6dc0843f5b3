"""Tests of the heun sampler plug-in, runnable against an installed copy: `pytest tests`.

Gaussian data N(mu, s^2) has a closed-form exact denoiser and a closed-form probability-flow ODE
solution, so the sampler's error is measured exactly.
"""

from __future__ import annotations

import math

import torch

from vqvdm_core import create
from vqvdm_core.interfaces.sampler import run_sampler
from vqvdm_core.registry import Registry, conformance_problem
from vqvdm_example_plugin import Heun

MU, S = 0.7, 0.3


def oracle(schedule, calls):
    def model_fn(x_t, t):  # the exact x0 predictor of N(MU, S^2) data
        calls.append(int(t[0]))
        abar = schedule.alphas_cumprod[t].to(x_t.dtype)[:, None]
        return MU + abar.sqrt() * S**2 / (abar * S**2 + 1 - abar) * (x_t - abar.sqrt() * MU)
    return model_fn


def test_the_entry_point_is_installed_and_the_class_conforms():
    registry = Registry()
    entry = registry.entry("sampler", "heun")
    assert entry.distribution == "vqvdm-example-plugin"
    assert registry.load("sampler", "heun") is Heun
    assert conformance_problem("sampler", Heun) is None


def test_heun_solves_the_ode_more_accurately_than_ddim_at_equal_denoiser_calls():
    schedule = create("schedule", "ddpm")
    start = torch.randn((256, 1), generator=torch.Generator().manual_seed(0))
    abar = float(schedule.alphas_cumprod[-1])
    exact = MU + (start / math.sqrt(abar) - MU) * S / math.sqrt(S**2 + (1 - abar) / abar)

    def error(sampler, steps):
        calls = []
        out = run_sampler(sampler, oracle(schedule, calls), schedule, prediction_type="x0",
                          x=start.clone(), steps=steps)
        return (out - exact).abs().max().item(), len(calls)

    heun = Heun()
    heun_error, heun_calls = error(heun, 50)
    levels = len(schedule.chain(50, spacing="karras"))
    assert heun_calls == heun.evaluations(levels) == 2 * levels - 1
    ddim_error, ddim_calls = error(create("sampler", "ddim"), heun_calls)
    assert ddim_calls == heun_calls
    assert heun_error < ddim_error / 3
    assert error(heun, 100)[0] < 3e-3 < error(heun, 20)[0] / 10  # second order: ~5x per halved step

"""Every Gaussian path against known answers: the ``flow`` and ``edm`` schedules beside ``ddpm``.

For data N(MU, S^2) the exact denoiser on any path ``x = alpha x0 + sigma eps`` is closed form
(``E[x0 | x] = MU + alpha S^2 / (alpha^2 S^2 + sigma^2) (x - alpha MU)``), and so is the
probability-flow ODE's solution (it keeps ``(x - alpha MU) / sqrt(alpha^2 S^2 + sigma^2)``), so each
sampler's error is measured exactly on each path, for each prediction type.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import UserError
from vqvdm_core.interfaces.gaussian_path import Level, prediction_target, prediction_to_x0_eps
from vqvdm_core.interfaces.sampler import SamplingChain, run_sampler
from vqvdm_core.recipe import load_recipe
from vqvdm_plugins.schedules.flow import shift_time, unshift_time

MU, S = 0.7, 0.3
PATHS = ("ddpm", "flow", "edm")
REFERENCE = Path(__file__).parent / "reference"


def oracle(schedule, prediction_type, calls=None):
    """The exact denoiser of N(MU, S^2) data as a raw network on ``schedule``'s path: it is given
    ``model_input(x)`` and answers with the training target of the exact (x0, eps)."""

    def model_fn(x_in, t):
        if calls is not None:
            calls.append(float(t[0]))
        alpha, sigma = (v.to(x_in.dtype).reshape(-1, *([1] * (x_in.ndim - 1))) for v in schedule.alpha_sigma(t))
        x = x_in / schedule.model_input(torch.ones_like(x_in), t)  # undo the input scaling (EDM's c_in)
        x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x - alpha * MU)
        eps = (x - alpha * x0) / sigma
        return schedule.training_target(x0, eps, t, prediction_type)

    return model_fn


def exact_ode(chain: SamplingChain, x):
    """Where the probability-flow ODE takes ``x`` at the chain's first level, for Gaussian data."""
    alpha, sigma = chain.alpha(0), chain.sigma(0)
    return MU + S * (x - alpha * MU) / math.sqrt(alpha**2 * S**2 + sigma**2)


def ode_error(schedule, sampler, prediction_type, steps, *, n=256):
    start = torch.randn((n, 1), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if schedule.chain(steps).alpha(0) > 0:  # not pure noise: start on the path's marginal there
        chain = schedule.chain(steps)
        start = chain.alpha(0) * MU + math.sqrt(chain.alpha(0) ** 2 * S**2 + chain.sigma(0) ** 2) * start
    exact = exact_ode(create("sampler", sampler).chain(schedule, steps), start)
    out = run_sampler(create("sampler", sampler), oracle(schedule, prediction_type), schedule,
                      prediction_type=prediction_type, x=start.clone(), steps=steps)
    return (out - exact).abs().max().item()


def kinds(path):
    # epsilon says nothing of x0 in the pure noise a flow chain starts in (refused: tested below)
    return ("velocity", "x0", "v") if path == "flow" else ("epsilon", "x0", "v", "velocity")


# -- the samplers on every path ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sampler, options, steps", [
    ("ddpm", {}, 500), ("ddim", {"eta": 1.0}, 500), ("dpmpp_2m", {"eta": 1.0}, 200)])
def test_stochastic_samplers_draw_the_data_distribution_on_every_path(path, sampler, options, steps):
    schedule = create("schedule", path)
    for kind in kinds(path)[:2]:
        out = run_sampler(create("sampler", sampler, **options), oracle(schedule, kind), schedule,
                          prediction_type=kind, shape=(20_000, 1), steps=steps,
                          generator=torch.Generator().manual_seed(0), device="cpu")
        assert out.mean().item() == pytest.approx(MU, abs=0.01), kind
        assert out.std().item() == pytest.approx(S, abs=0.01), kind


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sampler, order", [("ddim", 1), ("euler", 1), ("dpmpp_2m", 2), ("unipc", 2), ("heun", 2)])
def test_ode_samplers_converge_to_the_exact_ode_solution_on_every_path(path, sampler, order):
    schedule = create("schedule", path)
    for kind in kinds(path):
        coarse, fine = ode_error(schedule, sampler, kind, 10), ode_error(schedule, sampler, kind, 200)
        assert fine < coarse / 10, (kind, coarse, fine)
        assert fine < (0.03 if order == 1 else 1e-2), (kind, fine)


def test_heun_is_second_order_on_edm_as_karras_algorithm_1():
    schedule = create("schedule", "edm")
    errors = [ode_error(schedule, "heun", "x0", k) for k in (20, 40, 80)]
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3  # ~4x per halved step


def test_ddim_on_the_flow_path_is_euler_to_float_precision():
    schedule = create("schedule", "flow", shift=3.0)
    start = torch.randn((512, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    runs = [run_sampler(create("sampler", name), oracle(schedule, "velocity"), schedule,
                        prediction_type="velocity", x=start.clone(), steps=12) for name in ("ddim", "euler")]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-12)


def test_euler_on_flow_is_the_plain_velocity_step():
    # diffusers' FlowMatchEulerDiscreteScheduler: x_{i+1} = x_i + (t_{i+1} - t_i) v
    schedule = create("schedule", "flow", shift=2.0)
    model = oracle(schedule, "velocity")
    chain = schedule.chain(6)
    x = torch.randn((64, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = x.clone()
    for i in range(len(chain)):
        t_i = chain.sigma(i)
        v = model(expected, torch.full((64,), chain.timesteps[i], dtype=torch.float32))
        expected = expected + (chain.sigma(i + 1) - t_i) * v
    out = run_sampler(create("sampler", "euler"), model, schedule, prediction_type="velocity", x=x, steps=6)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_heun_counts_two_calls_per_level_but_the_last():
    schedule, calls = create("schedule", "flow"), []
    run_sampler(create("sampler", "heun"), oracle(schedule, "velocity", calls), schedule,
                prediction_type="velocity", shape=(4, 1), steps=5)
    assert len(calls) == create("sampler", "heun").evaluations(5) == 9


# -- training targets and conversions ------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_every_prediction_types_target_converts_back_to_the_same_x0_and_eps(path):
    schedule = create("schedule", path)
    g = torch.Generator().manual_seed(4)
    t = schedule.sample_timesteps(64, device="cpu", generator=g)
    x0 = torch.randn((64, 2, 3), generator=g, dtype=torch.float64)
    eps = torch.randn((64, 2, 3), generator=g, dtype=torch.float64)
    x_t = schedule.add_noise(x0, eps, t)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(x_t, alpha[:, None, None] * x0 + sigma[:, None, None] * eps, rtol=1e-6, atol=1e-6)
    for kind in ("epsilon", "x0", "v", "velocity"):
        target = schedule.training_target(x0, eps, t, kind)
        for i in range(0, 64, 7):
            level = Level(time=float(t[i]), alpha=float(alpha[i]), sigma=float(sigma[i]))
            got_x0, got_eps = schedule.predict_x0_eps(target[i], x_t[i], level, kind)
            torch.testing.assert_close(got_x0, x0[i], rtol=1e-5, atol=1e-5 * max(1.0, float(sigma[i] / alpha[i])))
            torch.testing.assert_close(got_eps, eps[i], rtol=1e-5, atol=1e-5)


def test_the_flow_velocity_is_the_path_derivative_and_v_is_salimans_and_hos_on_a_vp_path():
    x0, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    h, t = 1e-6, 0.37
    path = lambda u: (1 - u) * x0 + u * eps  # noqa: E731
    velocity = prediction_target(x0, eps, 1 - t, t, "velocity")
    torch.testing.assert_close(velocity, (path(t + h) - path(t - h)) / (2 * h), rtol=1e-8, atol=1e-8)
    a, s = math.cos(0.4), math.sin(0.4)  # a VP level: v = a eps - s x0 either way
    torch.testing.assert_close(prediction_target(x0, eps, a, s, "v"), a * eps - s * x0, rtol=1e-12, atol=1e-12)
    x_t = 2.0 * (a * x0 + s * eps)  # the same level scaled by 2: v is taken on x / 2
    back = prediction_to_x0_eps(prediction_target(x0, eps, 2 * a, 2 * s, "v"), x_t, 2 * a, 2 * s, "v")
    torch.testing.assert_close(back[0], x0, rtol=1e-12, atol=1e-12)


def test_edm_preconditioning_is_karras_table_1():
    schedule = create("schedule", "edm", sigma_data=0.5)
    sigma = 1.7
    c_skip, c_out, c_in = schedule.preconditioning(sigma)
    assert c_skip == pytest.approx(0.25 / (sigma**2 + 0.25))
    assert c_out == pytest.approx(sigma * 0.5 / math.sqrt(sigma**2 + 0.25))
    assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + 0.25))
    t = torch.full((3,), math.log(sigma) / 4)  # the denoiser's time value is c_noise = ln(sigma) / 4
    x = torch.randn(3, 2)
    torch.testing.assert_close(schedule.model_input(x, t), x * c_in)
    level = schedule.chain_at([math.log(sigma) / 4]).level(0)
    f = torch.randn(3, 2)
    x0, _ = schedule.predict_x0_eps(f, x, level, "x0")
    torch.testing.assert_close(x0, c_skip * x + c_out * f)
    # the EDM weight lambda(sigma) on ||D - x0||^2 is lambda c_out^2 = 1 on F's output
    torch.testing.assert_close(schedule.loss_weight(t, "x0"), torch.ones(3), rtol=1e-6, atol=1e-6)
    assert create("schedule", "edm", precondition=False).model_input(x, t) is x


def test_loss_weightings_are_min_snr_and_edm_in_x0_space():
    ddpm = create("schedule", "ddpm", loss_weighting="min_snr", min_snr_gamma=5.0)
    assert create("schedule", "ddpm").loss_weight(torch.tensor([3]), "epsilon") is None  # the paper's plain mean
    t = torch.tensor([10, 500, 990])
    abar = ddpm.alphas_cumprod[t]
    snr = abar / (1 - abar)
    torch.testing.assert_close(ddpm.loss_weight(t, "epsilon"), (snr.clamp(max=5.0) / snr).float())  # Hang et al.
    torch.testing.assert_close(ddpm.loss_weight(t, "v"), (snr.clamp(max=5.0) / (snr + 1)).float())
    flow = create("schedule", "flow", loss_weighting="edm")
    u = torch.tensor([0.2, 0.5, 0.9])
    s = u / (1 - u)  # sigma / alpha
    lam = (s**2 + 1) / s**2
    torch.testing.assert_close(flow.loss_weight(u * 1000, "velocity"), (lam * u**2).float(), rtol=1e-5, atol=1e-6)


# -- training draws ----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"train_time": "uniform"}, {"train_time": "logit_normal"}, {"train_time": "logit_normal", "logit_mean": 0.5,
                                                                "shift": 3.0},
    {"train_time": "mode", "mode_scale": 1.29}, {"train_time": "mode", "mode_scale": -0.5, "shift": 2.0}])
def test_flow_training_draws_follow_their_densities(options):
    schedule = create("schedule", "flow", **options)
    t = schedule.sample_timesteps(200_000, device="cpu", generator=torch.Generator().manual_seed(5)) / 1000
    assert t.dtype == torch.float32 and 0.0 <= t.min() and t.max() <= 1.0
    edges = torch.linspace(0, 1, 21, dtype=torch.float64)
    counts = torch.histc(t.double(), bins=20, min=0.0, max=1.0) / t.numel()
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)[1:-1]
    density = schedule.time_density(grid)
    for k in range(20):  # each bin's mass against the density integrated over it (midpoint rule)
        inside = (grid >= edges[k]) & (grid < edges[k + 1])
        expected = float(density[inside].sum() * (grid[1] - grid[0]))
        assert abs(float(counts[k]) - expected) < 0.006, (k, float(counts[k]), expected)


def test_edm_draws_log_normal_sigmas():
    schedule = create("schedule", "edm", p_mean=-1.2, p_std=1.2)
    t = schedule.sample_timesteps(100_000, device="cpu", generator=torch.Generator().manual_seed(6))
    log_sigma = 4 * t.double()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.02)


def test_edm_time_scale_changes_only_the_time_value_the_denoiser_sees():
    plain, wide = create("schedule", "edm"), create("schedule", "edm", time_scale=250.0)
    a, b = plain.chain(6), wide.chain(6)
    assert a.sigmas == b.sigmas and a.alphas == b.alphas
    assert b.timesteps == pytest.approx([250.0 * t for t in a.timesteps], rel=1e-12)
    draws = [s.sample_timesteps(64, device="cpu", generator=torch.Generator().manual_seed(2)) for s in (plain, wide)]
    torch.testing.assert_close(draws[1], 250.0 * draws[0])
    x0, noise = torch.randn(64, 3), torch.randn(64, 3)
    torch.testing.assert_close(wide.add_noise(x0, noise, draws[1]), plain.add_noise(x0, noise, draws[0]))
    torch.testing.assert_close(wide.model_input(x0, draws[1]), plain.model_input(x0, draws[0]))
    assert wide.chain_at(b.timesteps).sigmas == pytest.approx(a.sigmas, rel=1e-12)


# -- shifts and chains ---------------------------------------------------------------------------


def test_the_shift_keeps_both_ends_and_inverts():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for shift in (0.5, 1.0, 3.0):
        shifted = shift_time(t, shift)
        assert shifted[0] == 0.0 and shifted[-1] == 1.0
        torch.testing.assert_close(unshift_time(shifted, shift), t, rtol=0, atol=1e-15)
    assert bool((shift_time(t[1:-1], 3.0) > t[1:-1]).all())  # towards the noise end


def test_chains_keep_their_first_and_last_levels():
    flow = create("schedule", "flow", shift=3.0)
    chain = flow.chain(8, spacing="trailing")
    assert chain.timesteps[0] == 1000.0 and chain.alpha(0) == 0.0 and chain.space == "flow"
    assert chain.sigma(7) == pytest.approx(shift_time(1 / 8, 3.0)) and chain.sigma(8) == 0.0
    unshifted = create("schedule", "flow", shift=3.0, sample_shift=1.0)
    assert unshifted.chain(4, spacing="trailing").sigmas == (1.0, 0.75, 0.5, 0.25)
    assert unshifted.chain(4).sigmas == pytest.approx((1.0, 0.667, 0.334, 0.001))  # diffusers' grid
    uniform = flow.chain(8)
    assert uniform.sigmas[0] == 1.0 and uniform.sigmas[-1] == shift_time(1e-3, 3.0)
    edm = create("schedule", "edm")
    chain = edm.chain(18)
    assert chain.sigmas[0] == 80.0 and chain.sigmas[-1] == 0.002 and chain.alpha(3) == 1.0
    assert chain.timesteps[0] == pytest.approx(math.log(80) / 4)
    assert chain.sigmas[1] == pytest.approx((80 ** (1 / 7) + (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 17) ** 7)
    started = edm.chain(5, start=math.log(2.0) / 4)
    assert started.sigmas[0] == pytest.approx(2.0) and started.sigmas[-1] == 0.002
    assert flow.chain(4, start=500.0).sigmas[0] == pytest.approx(0.5)


def test_a_level_map_builds_any_chain_and_the_sampler_may_space_its_own():
    flow = create("schedule", "flow")
    chain = flow.chain_at([900.0, 400.0, 50.0])
    assert chain.sigmas == (0.9, 0.4, 0.05) and chain.alphas == pytest.approx((0.1, 0.6, 0.95))

    class Quadratic(type(create("sampler", "euler"))):
        def chain(self, schedule, steps, *, start=None):
            return schedule.chain_at([1000.0 * (1 - i / steps) ** 2 for i in range(steps)])

    calls = []
    run_sampler(Quadratic(), oracle(flow, "velocity", calls), flow, prediction_type="velocity",
                shape=(2, 1), steps=4)
    assert calls == [1000.0, 562.5, 250.0, 62.5]


def test_vp_chains_still_take_abar_and_other_chains_refuse_it():
    vp = SamplingChain(timesteps=(10, 3), alphas_cumprod=(0.5, 0.9))
    assert vp.variance_preserving and vp.alpha(0) == math.sqrt(0.5) and vp.transition(0)[1] == 1 - 0.5 / 0.9
    flow = create("schedule", "flow").chain(3)
    with pytest.raises(UserError, match="only variance-preserving chains"):
        flow.abar(0)
    with pytest.raises(ValueError, match="noisiest to cleanest"):
        SamplingChain(timesteps=(1.0, 2.0), alphas=(0.9, 0.5), sigmas=(0.5, 0.9))


# -- the paper's DDPM, bit for bit ----------------------------------------------------------------


def test_ddpm_chains_sample_bit_for_bit_as_before_other_paths():
    maker = runpy.run_path(str(REFERENCE / "make_vp_sampling.py"))
    reference = json.loads((REFERENCE / "vp_sampling.json").read_text())
    cases = list(maker["cases"]())
    assert len(cases) == len(reference) == 192
    for key, schedule, sampler, kind in cases:
        assert maker["run"](schedule, sampler, kind) == reference[key], key


# -- refusals ------------------------------------------------------------------------------------


def test_what_cannot_run_is_refused_before_any_denoiser_call():
    flow, calls = create("schedule", "flow"), []
    with pytest.raises(UserError, match="epsilon denoiser cannot be sampled from pure noise"):
        run_sampler(create("sampler", "dpmpp_2m"), oracle(flow, "epsilon", calls), flow,
                    prediction_type="epsilon", shape=(2, 1), steps=4)
    with pytest.raises(UserError, match="use space: flow"):
        run_sampler(create("sampler", "heun", space="sigma"), oracle(flow, "velocity", calls), flow,
                    prediction_type="velocity", shape=(2, 1), steps=4)
    with pytest.raises(UserError, match="unknown spacing 'log_snr' for the flow schedule; use one of: uniform, trailing"):
        run_sampler(create("sampler", "ddim", spacing="log_snr"), oracle(flow, "velocity", calls), flow,
                    prediction_type="velocity", shape=(2, 1), steps=4)
    assert calls == []
    below = create("schedule", "flow", t_max=0.95)
    out = run_sampler(create("sampler", "ddim"), oracle(below, "epsilon"), below, prediction_type="epsilon",
                      shape=(2, 1), steps=4)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("node, message", [
    ({"name": "flow", "shift": 0}, "schedule.shift: Input should be greater than 0"),
    ({"name": "flow", "train_time": "cosine"}, "schedule.train_time: Input should be 'uniform', 'logit_normal' or 'mode'"),
    ({"name": "flow", "mode_scale": 3.0}, "mode_scale must lie in [-1, 1.7519]"),
    ({"name": "edm", "sigma_min": 100.0}, "sigma_min (100.0) must be below sigma_max (80.0)"),
    ({"name": "edm", "loss_weighting": "snr"}, "schedule.loss_weighting: Input should be 'none', 'min_snr' or 'edm'"),
])
def test_bad_schedule_values_give_one_clear_recipe_error(node, message):
    raw = {"name": "t", "data": {"train": {"name": "synthetic_motion"}}, "tokenizer": {"name": "vqgan3d"},
           "denoiser": {"name": "unet3d", "prediction_type": "velocity"}, "schedule": node}
    with pytest.raises(Exception) as info:
        load_recipe(raw)
    assert message in str(info.value)

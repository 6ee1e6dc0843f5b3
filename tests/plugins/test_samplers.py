"""Sampler plug-ins against known answers: Gaussian data, whose exact denoiser and probability-flow
ODE solution are closed-form, for epsilon, x0 and v denoisers alike."""

from __future__ import annotations

import math

import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import ComponentError, UserError
from vqvdm_core.interfaces import Sampler
from vqvdm_core.interfaces.sampler import SamplingChain, resolve_sampler, respace, run_sampler, sampler_label

MU, S = 0.7, 0.3  # data ~ N(MU, S^2) in every dimension
PREDICTIONS = ("epsilon", "x0", "v")


def schedule(**kw):
    return create("schedule", "ddpm", **kw)


def oracle(sched, prediction_type: str, calls: list[int] | None = None):
    """The exact denoiser of N(MU, S^2) data, predicting ``prediction_type``."""

    def model_fn(x_t, t):
        if calls is not None:
            calls.append(int(t[0]))
        abar = sched.alphas_cumprod[t].to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x0 = MU + a * S**2 / (abar * S**2 + 1 - abar) * (x_t - a * MU)  # E[x0 | x_t]
        eps = (x_t - a * x0) / s
        return {"epsilon": eps, "x0": x0, "v": a * eps - s * x0}[prediction_type]

    return model_fn


def ode_solution(sched, x_start, t_start: int):
    """Where the probability-flow ODE takes ``x_start`` at time step ``t_start`` for Gaussian data:
    with ``x~ = x / alpha`` and ``sigma~ = sigma / alpha``, ``x~(0) = MU + (x~ - MU) S / sqrt(S^2 + sigma~^2)``."""
    abar = float(sched.alphas_cumprod[t_start])
    scaled, sigma2 = x_start / math.sqrt(abar), (1 - abar) / abar
    return MU + (scaled - MU) * S / math.sqrt(S**2 + sigma2)


def draw(sampler, sched, prediction_type, steps, *, n=20_000, seed=0):
    return run_sampler(resolve_sampler(sampler), oracle(sched, prediction_type), sched,
                       prediction_type=prediction_type, shape=(n, 1), steps=steps,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("name, options, steps", [
    ("ddpm", {}, 1000), ("ddim", {}, 250), ("ddim", {"eta": 1.0}, 1000), ("dpmpp_2m", {}, 200),
    ("dpmpp_2m", {"eta": 1.0}, 400), ("unipc", {}, 200)])
def test_every_sampler_recovers_gaussian_data_for_every_prediction_type(name, options, steps, prediction_type):
    x = draw(create("sampler", name, **options), schedule(), prediction_type, steps)
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(S, abs=0.01)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_ode_samplers_converge_to_the_exact_ode_solution_dpm_solver_faster(prediction_type, beta_schedule):
    # On a chain even in log-SNR (the setting of Lu et al.'s analysis) the second-order multistep
    # solver is several times closer to the exact ODE solution than first-order DDIM at every count.
    sched = schedule(beta_schedule=beta_schedule)
    start = torch.randn((512, 1), generator=torch.Generator().manual_seed(1))
    exact = ode_solution(sched, start, sched.num_train_steps - 1)

    def error(name: str, steps: int) -> float:
        out = run_sampler(create("sampler", name, spacing="log_snr"), oracle(sched, prediction_type), sched,
                          prediction_type=prediction_type, x=start.clone(), steps=steps)
        return (out - exact).abs().max().item()

    counts = (10, 20, 50, 100)
    ddim, dpm, unipc = ([error(name, k) for k in counts] for name in ("ddim", "dpmpp_2m", "unipc"))
    assert ddim == sorted(ddim, reverse=True) and dpm[3] < dpm[2] < dpm[0]
    assert max(unipc[2:]) < 3e-3 < unipc[0]
    assert all(d < first / 4 for d, first in zip(dpm, ddim))
    assert all(u < first / 4 for u, first in zip(unipc, ddim))
    assert dpm[3] < 3e-3 and unipc[2] < dpm[2]  # the corrector raises the order: closer at 50 levels


def test_dpm_solver_and_ddim_agree_at_many_steps():
    sched = schedule(beta_schedule="cosine")
    start = torch.randn((256, 3), generator=torch.Generator().manual_seed(2))
    runs = [run_sampler(resolve_sampler(name), oracle(sched, "v"), sched, prediction_type="v",
                        x=start.clone(), steps=None) for name in ("ddim", "dpmpp_2m")]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=3e-3)  # DDIM: first order, ~1e-3 off


@pytest.mark.parametrize("spacing", ["uniform", "log_snr"])
def test_unipc_without_its_corrector_is_dpm_solver_pp_2m(spacing):
    sched = schedule(beta_schedule="cosine")
    start = torch.randn((64, 2), generator=torch.Generator().manual_seed(6))
    runs = [run_sampler(create("sampler", name, spacing=spacing, **options), oracle(sched, "v"), sched,
                        prediction_type="v", x=start.clone(), steps=12)
            for name, options in (("unipc", {"corrector": False}), ("dpmpp_2m", {}), ("unipc", {}))]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-6)
    assert not torch.allclose(runs[2], runs[1], atol=1e-3)


def test_ddim_eta_zero_is_deterministic_and_inverts_along_its_chain():
    sched = schedule(beta_schedule="cosine")
    model = oracle(sched, "epsilon")
    start = torch.randn((64, 2), generator=torch.Generator().manual_seed(3))

    def inversion_error(steps: int | None) -> float:
        states = []
        a = run_sampler(resolve_sampler("ddim"), model, sched, prediction_type="epsilon", x=start.clone(),
                        steps=steps, callback=lambda step: states.append(step.x),
                        generator=torch.Generator().manual_seed(11))
        b = run_sampler(resolve_sampler("ddim"), model, sched, prediction_type="epsilon", x=start.clone(),
                        steps=steps, generator=torch.Generator().manual_seed(12))
        assert torch.equal(a, b)  # eta = 0: the generator is never used
        # Invert from the last level back to the first, each step with the estimates at the known point.
        chain = sched.chain(steps)
        x = states[-1]
        for i in reversed(range(len(chain) - 1)):
            t = torch.full((x.shape[0],), chain.timesteps[i + 1])
            x0, eps = sched.predict_x0_eps(model(x, t), x, chain.alphas_cumprod[i + 1], "epsilon")
            x = chain.alpha(i) * x0 + chain.sigma(i) * eps
        return (x - start).abs().max().item()

    coarse, fine = inversion_error(100), inversion_error(None)
    assert fine < 0.015 * start.abs().max().item()  # 1000 steps: back to the start noise within 1.5 %
    assert 5 < coarse / fine < 20  # first order: the error falls with the step size


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp_2m", "unipc"])
def test_starting_mid_chain_runs_from_that_step(name):
    sched = schedule()
    seen = []
    x_t = torch.randn((256, 1), generator=torch.Generator().manual_seed(4))
    out = run_sampler(resolve_sampler(name), oracle(sched, "v"), sched, prediction_type="v", x=x_t,
                      steps=100, start_step=300, callback=lambda step: seen.append(step.timestep),
                      generator=torch.Generator().manual_seed(5))
    assert seen[0] == 300 and seen[-1] == 0 and seen == sorted(seen, reverse=True)
    assert seen[1:] == [k for k in reversed(sched.timesteps(100).tolist()) if k < 300]
    assert out.shape == x_t.shape
    if name != "ddpm":  # deterministic: the exact ODE solution from (x_t, 300), on every step below it
        fine = run_sampler(resolve_sampler(name), oracle(sched, "v"), sched, prediction_type="v", x=x_t,
                           steps=None, start_step=300)
        torch.testing.assert_close(fine, ode_solution(sched, x_t, 300), rtol=0, atol=1e-2)
    with pytest.raises(UserError, match="pass x"):
        run_sampler(resolve_sampler(name), oracle(sched, "v"), sched, prediction_type="v", shape=(2, 1),
                    start_step=300)


def test_callback_sees_each_level_once_with_the_x0_estimate_and_calls_match_evaluations():
    sched = schedule()
    for name in ("ddpm", "ddim", "dpmpp_2m", "unipc"):
        sampler, calls, steps = resolve_sampler(name), [], []
        run_sampler(sampler, oracle(sched, "x0", calls), sched, prediction_type="x0", shape=(3, 2), steps=10,
                    callback=steps.append, generator=torch.Generator().manual_seed(0))
        assert [s.index for s in steps] == list(range(10)) and {s.num_steps for s in steps} == {10}
        assert [s.timestep for s in steps] == calls == sorted(sched.timesteps(10).tolist(), reverse=True)
        assert len(calls) == sampler.evaluations(10)
        torch.testing.assert_close(steps[-1].x0, oracle(sched, "x0")(steps[-1].x, torch.zeros(3, dtype=torch.long)))


@pytest.mark.parametrize("name, options", [("ddpm", {}), ("ddpm", {"variance": "beta"}), ("ddim", {"eta": 0.5}),
                                           ("dpmpp_2m", {"eta": 1.0})])
def test_stochastic_samplers_are_reproducible_from_the_seed(name, options):
    sched = schedule()
    sampler = create("sampler", name, **options)
    run = lambda seed: draw(sampler, sched, "epsilon", 10, n=6, seed=seed)  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_ddim_at_eta_one_is_the_ancestral_ddpm_step_draw_for_draw(prediction_type):
    # Song et al. Sec. 4.1: eta = 1 gives DDPM's posterior variance, and the two means coincide;
    # with the same generator the chains match, and a DDIM that ignored eta would not.
    sched = schedule()
    start = torch.randn((64, 2), generator=torch.Generator().manual_seed(0))
    runs = {name: run_sampler(sampler, oracle(sched, prediction_type), sched, prediction_type=prediction_type,
                              x=start.clone(), steps=30, generator=torch.Generator().manual_seed(1))
            for name, sampler in (("ddim_eta1", create("sampler", "ddim", eta=1.0)),
                                  ("ddpm", create("sampler", "ddpm")),
                                  ("ddim_eta0", create("sampler", "ddim")))}
    torch.testing.assert_close(runs["ddim_eta1"], runs["ddpm"], rtol=0, atol=1e-5)
    assert (runs["ddim_eta0"] - runs["ddpm"]).abs().max() > 0.05


@pytest.mark.parametrize("name, options", [("ddim", {"eta": 0.5}), ("dpmpp_2m", {"eta": 1.0}), ("ddpm", {})])
def test_stochastic_samplers_draw_fresh_noise_from_the_generator_and_deterministic_ones_do_not(name, options):
    sched = schedule()
    start = torch.randn((8, 2), generator=torch.Generator().manual_seed(0))

    def run(sampler, seed):
        return run_sampler(sampler, oracle(sched, "v"), sched, prediction_type="v", x=start.clone(), steps=10,
                           generator=torch.Generator().manual_seed(seed))

    stochastic = create("sampler", name, **options)
    assert torch.equal(run(stochastic, 1), run(stochastic, 1)) and not torch.allclose(run(stochastic, 1),
                                                                                       run(stochastic, 2))
    deterministic = create("sampler", name, **{k: 0.0 for k in options})
    if options:  # eta = 0: the same start gives the same sample whatever the generator
        assert torch.equal(run(deterministic, 1), run(deterministic, 2))


def test_ddpm_variances_bracket_the_data_spread_on_a_short_chain():
    # Few steps: the posterior ("fixed small") variance under-disperses and beta ("fixed large")
    # over-disperses (Ho et al. Sec. 3.2; Nichol & Dhariwal Sec. 3.1).
    small = draw(create("sampler", "ddpm", variance="posterior"), schedule(), "epsilon", 100).std().item()
    large = draw(create("sampler", "ddpm", variance="beta"), schedule(), "epsilon", 100).std().item()
    assert 0.25 < small < S < large < 0.35


@pytest.mark.parametrize("spacing", ["uniform", "karras", "log_snr"])
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_respacing_keeps_the_first_and_last_time_steps(spacing, beta_schedule):
    abar = schedule(beta_schedule=beta_schedule).alphas_cumprod
    for steps in (2, 5, 10, 20, 100, 1000):
        kept = respace(abar, steps, spacing=spacing)
        assert kept[0] == 999 and kept[-1] == 0 and kept == sorted(set(kept), reverse=True)
        assert len(kept) <= steps and (spacing != "uniform" or len(kept) == steps)
        started = respace(abar, steps, start=400, spacing=spacing)
        assert started[0] == 400 and started[-1] == 0
    assert respace(abar, None) == list(range(999, -1, -1))


def test_trailing_spacing_spends_no_call_at_the_clean_end():
    abar = schedule().alphas_cumprod
    assert respace(abar, 10, spacing="trailing") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert respace(abar, 4, spacing="trailing", start=600) == [600, 499, 249]
    assert respace(abar, 1000, spacing="trailing") == list(range(999, -1, -1))


def test_log_snr_spacing_is_even_in_log_snr():
    sched = schedule()
    chain = sched.chain(12, spacing="log_snr")
    gaps = [chain.log_snr(i + 1) - chain.log_snr(i) for i in range(len(chain) - 1)]
    assert max(gaps) / min(gaps) < 2.0  # nearest-step rounding only
    uniform = sched.chain(12)
    uniform_gaps = [uniform.log_snr(i + 1) - uniform.log_snr(i) for i in range(len(uniform) - 1)]
    assert max(uniform_gaps) / min(uniform_gaps) > 5.0


def test_bad_names_steps_and_chains_give_one_clear_error():
    with pytest.raises(ComponentError, match=r"unknown sampler 'dpmpp2m'.*Did you mean 'dpmpp_2m'"):
        resolve_sampler("dpmpp2m")
    with pytest.raises(UserError, match="between 1 and 1000, got 0"):
        schedule().chain(0)
    with pytest.raises(UserError, match="between 1 and 1000, got 1001"):
        schedule().chain(1001)
    with pytest.raises(UserError, match="start time step must be between 0 and 999"):
        schedule().chain(10, start=1000)
    with pytest.raises(UserError, match="unknown spacing 'linear'"):
        schedule().chain(10, spacing="linear")
    with pytest.raises(Exception, match="greater than or equal to 0"):
        create("sampler", "ddim", eta=-1)
    with pytest.raises(ValueError, match="strictly descend"):
        SamplingChain(timesteps=(1, 5), alphas_cumprod=(0.9, 0.5))


def test_the_schedule_names_the_sampler_of_older_recipes():
    assert resolve_sampler(None, schedule=schedule()).config.variance == "posterior"
    legacy = resolve_sampler(None, schedule=schedule(sampler="ddim", ddim_eta=0.3))
    assert isinstance(legacy, Sampler) and legacy.config.eta == 0.3
    assert type(legacy).__name__ == "DDIMSampler"
    # What evaluate records as the sampler: the options that differ from the sampler's defaults.
    assert sampler_label(None, schedule=schedule(sampler="ddim", ddim_eta=0.3)) == "ddim(eta=0.3)"
    assert sampler_label(None, schedule=schedule()) == "ddpm"
    assert sampler_label({"name": "unipc", "spacing": "trailing", "corrector": True}) == "unipc(spacing=trailing)"

"""The DDPM schedule: closed-form forward process, true posterior, respacing, and the sampling
convenience and sampler fields that recipes written before sampler plug-ins use (the samplers'
own known-answer tests are in test_samplers.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import ComponentError, UserError
from vqvdm_plugins.schedules import DDPMSchedule


def numpy_abar(num_steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(start, end, num_steps))


def test_default_is_ho_et_al_linear_schedule_in_float64():
    s = DDPMSchedule()
    assert s.num_train_steps == 1000
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), numpy_abar(), rtol=1e-12)


def test_add_noise_matches_closed_form():
    s = DDPMSchedule()
    x0 = torch.randn(3, 2, 2, 4, 4, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999])
    abar = numpy_abar()
    expected = torch.stack([math.sqrt(abar[k]) * x0[i] + math.sqrt(1 - abar[k]) * noise[i]
                            for i, k in enumerate(t.tolist())])
    torch.testing.assert_close(s.add_noise(x0, noise, t), expected, rtol=1e-12, atol=1e-12)
    # float32 and bfloat16 inputs keep their dtype.
    assert s.add_noise(x0.float(), noise.float(), t).dtype == torch.float32
    assert s.add_noise(x0.bfloat16(), noise.bfloat16(), t).dtype == torch.bfloat16


def test_posterior_matches_bayes_rule():
    s = DDPMSchedule()
    x0 = torch.randn(4, 3, dtype=torch.float64)
    x_t = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([1, 10, 500, 999])
    mean, var = s.posterior(x0, x_t, t)
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = numpy_abar()
    for i, k in enumerate(t.tolist()):
        # q(x_{t-1} | x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}); q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t).
        prior_mean, prior_var = math.sqrt(abar[k - 1]) * x0[i], 1 - abar[k - 1]
        alpha = 1 - betas[k]
        post_var = 1.0 / (1.0 / prior_var + alpha / betas[k])
        post_mean = post_var * (prior_mean / prior_var + math.sqrt(alpha) * x_t[i] / betas[k])
        assert var[i].item() == pytest.approx(post_var, rel=1e-9)
        torch.testing.assert_close(mean[i], post_mean, rtol=1e-9, atol=1e-12)
    # At t = 0 the posterior collapses onto x0.
    mean0, var0 = s.posterior(x0, x_t, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mean0, x0)
    assert (var0 == 0).all()


def test_training_targets_and_their_inversion():
    s = DDPMSchedule()
    x0 = torch.randn(2, 3, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([100, 800])
    x_t = s.add_noise(x0, noise, t)
    assert torch.equal(s.training_target(x0, noise, t, "epsilon"), noise)
    assert torch.equal(s.training_target(x0, noise, t, "x0"), x0)
    v = s.training_target(x0, noise, t, "v")
    abar = numpy_abar()[t.numpy()][:, None]
    torch.testing.assert_close(v, torch.from_numpy(np.sqrt(abar)) * noise - torch.from_numpy(np.sqrt(1 - abar)) * x0)
    for kind in ("epsilon", "x0", "v"):
        target = s.training_target(x0, noise, t, kind)
        for i in range(2):
            got_x0, got_eps = s.predict_x0_eps(target[i], x_t[i], float(s.alphas_cumprod[t[i]]), kind)
            torch.testing.assert_close(got_x0, x0[i])
            torch.testing.assert_close(got_eps, noise[i])


def test_respaced_and_full_schedules_agree_on_alpha_bar_at_shared_steps():
    s = DDPMSchedule()
    kept = s.timesteps(100)
    assert len(kept) == 100 and kept[0] == 0 and kept[-1] == 999
    assert (kept[1:] > kept[:-1]).all()
    torch.testing.assert_close(s.respaced_alphas_cumprod(100), s.alphas_cumprod[kept], rtol=0, atol=0)
    # The recomputed betas rebuild the same alpha-bar by cumulative product.
    rebuilt = torch.cumprod(1.0 - s.respaced_betas(100), dim=0)
    torch.testing.assert_close(rebuilt, s.alphas_cumprod[kept], rtol=1e-12, atol=0)
    assert torch.equal(s.timesteps(None), torch.arange(1000))
    assert s.timesteps(1).tolist() == [999]


def test_cosine_and_scaled_linear_betas():
    cosine = DDPMSchedule(beta_schedule="cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for k in (0, 250, 500, 900):
        assert cosine.alphas_cumprod[k].item() == pytest.approx(f((k + 1) / 1000) / f(0), rel=1e-9)
    scaled = DDPMSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    roots = scaled.betas.sqrt()
    torch.testing.assert_close(roots[1:] - roots[:-1], torch.full((999,), (0.012**0.5 - 0.00085**0.5) / 999,
                                                                   dtype=torch.float64))


def gaussian_oracle(s: DDPMSchedule, mu: float, sigma: float):
    """The exact epsilon predictor for data ~ N(mu, sigma^2)."""
    def model_fn(x_t, t):
        abar = s.alphas_cumprod[t].to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * mu) / (abar * sigma**2 + 1 - abar)
    return model_fn


def test_the_schedules_older_sampler_fields_reach_the_sampler_plugins_exactly():
    model = gaussian_oracle(DDPMSchedule(), 0.7, 0.3)

    def run(schedule, **kw):
        return schedule.sample(model, (64, 1), prediction_type="epsilon", steps=20,
                               generator=torch.Generator().manual_seed(0), **kw)

    assert torch.equal(run(DDPMSchedule(variance="beta")),
                       run(DDPMSchedule(), sampler=create("sampler", "ddpm", variance="beta")))
    assert torch.equal(run(DDPMSchedule(sampler="ddim", ddim_eta=0.4)),
                       run(DDPMSchedule(), sampler=create("sampler", "ddim", eta=0.4)))
    # Naming the sampler keeps the schedule's older options for it (a recipe's evaluate.sampler).
    assert torch.equal(run(DDPMSchedule(ddim_eta=0.4), sampler="ddim"),
                       run(DDPMSchedule(), sampler=create("sampler", "ddim", eta=0.4)))


def test_ddim_eta_zero_is_deterministic_given_the_start_noise():
    s = DDPMSchedule(sampler="ddim")
    model = gaussian_oracle(s, 0.0, 0.5)
    calls = []

    def counting(x_t, t):
        calls.append(int(t[0]))
        return model(x_t, t)

    a = s.sample(counting, (4, 3), prediction_type="epsilon", steps=20, generator=torch.Generator().manual_seed(3))
    # With eta = 0 only the start noise is random: drawing it separately reproduces the run.
    start = torch.randn((4, 3), generator=torch.Generator().manual_seed(3))
    expected = start
    kept = s.timesteps(20).tolist()
    for i in reversed(range(20)):
        abar_t = s.alphas_cumprod[kept[i]].item()
        abar_prev = s.alphas_cumprod[kept[i - 1]].item() if i else 1.0
        eps = model(expected, torch.full((4,), kept[i]))
        x0 = (expected - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
        expected = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps
    torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-5)
    assert calls == sorted(kept, reverse=True)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seeded_sample_is_reproducible(sampler):
    s = DDPMSchedule(ddim_eta=0.5)
    model = gaussian_oracle(s, 0.0, 1.0)

    def run(seed):
        return s.sample(model, (2, 3, 2), prediction_type="epsilon", steps=10, sampler=sampler,
                        generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_sampler_config_sets_the_default_and_sample_overrides_it():
    model = gaussian_oracle(DDPMSchedule(), 0.0, 1.0)

    def run(schedule, **kw):
        return schedule.sample(model, (3, 2), prediction_type="epsilon", steps=10,
                               generator=torch.Generator().manual_seed(0), **kw)

    ddim_default = DDPMSchedule(sampler="ddim")
    assert torch.equal(run(ddim_default), run(DDPMSchedule(), sampler="ddim"))
    assert not torch.allclose(run(ddim_default), run(ddim_default, sampler="ddpm"))
    with pytest.raises(ComponentError, match="Available samplers: ddim, ddpm, dpmpp_2m, euler, heun"):
        run(ddim_default, sampler="midpoint")


def test_progress_is_reported_once_per_step_and_steps_are_checked():
    s = DDPMSchedule()
    seen = []
    s.sample(lambda x, t: torch.zeros_like(x), (1, 2), prediction_type="epsilon", steps=7,
             progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 7) for i in range(1, 8)]
    with pytest.raises(UserError, match="between 1 and 1000"):
        s.timesteps(1001)


def test_x0_prediction_sampling_ends_on_the_predicted_x0():
    s = DDPMSchedule()
    target = torch.tensor([[0.25, -0.5]])
    out = s.sample(lambda x, t: target.expand_as(x), (1, 2), prediction_type="x0", steps=10,
                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target)


def test_sample_timesteps_cover_the_training_range_reproducibly():
    s = create("schedule", "ddpm")
    a = s.sample_timesteps(5000, device="cpu", generator=torch.Generator().manual_seed(0))
    b = s.sample_timesteps(5000, device="cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() <= 999 and len(a.unique()) > 900


def test_log_snr_normal_timesteps_follow_the_normal_in_log_snr():
    s = DDPMSchedule(beta_schedule="cosine", train_timesteps="log_snr_normal", log_snr_mean=-1.0, log_snr_std=1.5)
    abar = s.alphas_cumprod
    log_snr = (abar / (1 - abar)).log()
    t = s.sample_timesteps(200_000, device="cpu", generator=torch.Generator().manual_seed(0))
    drawn = log_snr[t]
    # The drawn noise levels have the configured mean and spread (the discrete steps are dense
    # enough near the mean that binning moves neither by more than a few hundredths).
    assert float(drawn.mean()) == pytest.approx(-1.0, abs=0.03)
    assert float(drawn.std()) == pytest.approx(1.5, abs=0.03)
    # Against the normal's CDF at a few points.
    for x in (-3.0, -1.0, 0.5):
        assert float((drawn <= x).double().mean()) == pytest.approx(
            float(torch.special.ndtr(torch.tensor((x + 1.0) / 1.5))), abs=0.01)
    probs = s.timestep_probabilities()
    assert probs.shape == (1000,) and float(probs.sum()) == pytest.approx(1.0)
    within = ((log_snr + 1.0).abs() <= 1.5)  # the steps one standard deviation from the mean
    assert float(probs[within].sum()) == pytest.approx(0.6827, abs=0.01)


def test_uniform_timesteps_stay_the_default_and_draw_as_before():
    s = DDPMSchedule(beta_schedule="cosine")
    a = s.sample_timesteps(64, device="cpu", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(s.timestep_probabilities(), torch.full((1000,), 1e-3, dtype=torch.float64))


def test_a_uniform_share_mixes_even_draws_into_the_normal():
    focused = DDPMSchedule(beta_schedule="cosine", train_timesteps="log_snr_normal", log_snr_mean=-2.0,
                           log_snr_std=1.5)
    mixed = DDPMSchedule(beta_schedule="cosine", train_timesteps="log_snr_normal", log_snr_mean=-2.0,
                         log_snr_std=1.5, uniform_share=0.25)
    torch.testing.assert_close(mixed.timestep_probabilities(),
                               0.75 * focused.timestep_probabilities() + 0.25 / 1000)
    # The clean steps the normal all but skips keep a quarter of their uniform share.
    assert float(focused.timestep_probabilities()[:100].sum()) < 1e-3
    assert float(mixed.timestep_probabilities()[:100].sum()) == pytest.approx(0.025, abs=1e-3)
    t = mixed.sample_timesteps(100_000, device="cpu", generator=torch.Generator().manual_seed(1))
    assert float((t < 100).double().mean()) == pytest.approx(0.025, abs=0.003)


def test_a_shifted_mean_draws_noisier_steps():
    def mean_step(mean: float) -> float:
        s = DDPMSchedule(beta_schedule="cosine", train_timesteps="log_snr_normal", log_snr_mean=mean)
        return float((s.timestep_probabilities() * torch.arange(1000.0, dtype=torch.float64)).sum())
    assert mean_step(-2.0) > mean_step(0.0) + 100 > mean_step(2.0) + 200


def test_clip_x0_clamps_the_x0_estimate_and_keeps_eps_consistent_with_it():
    s = DDPMSchedule(clip_x0=0.5)
    x_t = torch.tensor([[0.3, -2.0]])
    abar = float(s.alphas_cumprod[400])
    x0, eps = s.predict_x0_eps(torch.tensor([[2.0, -0.2]]), x_t, abar, "x0")
    torch.testing.assert_close(x0, torch.tensor([[0.5, -0.2]]))
    torch.testing.assert_close(math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps, x_t)  # still x_t's split
    out = s.sample(lambda x, t: torch.full_like(x, 2.0), (3, 2), prediction_type="x0", steps=10,
                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.full((3, 2), 0.5))
    unclipped = DDPMSchedule().sample(lambda x, t: torch.full_like(x, 2.0), (3, 2), prediction_type="x0",
                                      steps=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(unclipped, torch.full((3, 2), 2.0))


def test_clip_x0_clamps_the_estimate_and_keeps_eps_consistent_with_it():
    abar = 0.36  # alpha 0.6, sigma 0.8
    x_t = torch.tensor([[3.0, -0.2]])
    eps_prediction = torch.tensor([[-2.0, 0.5]])  # x0 = (x_t - 0.8 eps) / 0.6 = [7.67, -1.0]
    free = DDPMSchedule().predict_x0_eps(eps_prediction, x_t, abar, "epsilon")
    clipped = DDPMSchedule(clip_x0=1.0).predict_x0_eps(eps_prediction, x_t, abar, "epsilon")
    torch.testing.assert_close(free[0], torch.tensor([[23.0 / 3.0, -1.0]]))
    torch.testing.assert_close(clipped[0], torch.tensor([[1.0, -1.0]]))
    torch.testing.assert_close(clipped[1], (x_t - 0.6 * clipped[0]) / 0.8)  # eps follows the clamped x0
    torch.testing.assert_close(clipped[1][0, 1], free[1][0, 1])  # unclamped entries keep their eps

"""The standard DDPM noise schedule (Ho et al. 2020): the forward process and respaced chains.

Training uses all ``num_train_steps`` (1000) time steps. Sampling runs over any subset:
:meth:`~vqvdm_core.interfaces.NoiseSchedule.chain` with ``steps=100`` keeps 100 evenly spaced steps
(the paper times 100-step sampling); a sampler recomputes each step from ``abar`` at the kept steps,
as improved DDPM does (Nichol & Dhariwal 2021), so the same trained model serves every step count.
The update rules are sampler plug-ins (``ddpm``, ``ddim``, ``dpmpp_2m``, ...).

Every table is computed in float64 and cast to the input's dtype (float32 for half precision) when
applied.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.interfaces import NoiseSchedule, PredictionType
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.interfaces.gaussian_path import (
    LOSS_WEIGHTING_HELP,
    PREDICTION_TYPES,
    Level,
    LossWeighting,
    loss_weight,
    prediction_target,
)
from vqvdm_core.interfaces.sampler import uniform_timesteps

__all__ = ["DDPMSchedule", "make_betas", "respaced_timesteps"]


def make_betas(kind: str, num_steps: int, *, beta_start: float, beta_end: float,
               cosine_s: float = 0.008) -> Tensor:
    """``(num_steps,)`` float64 betas.

    * ``linear``: evenly from ``beta_start`` to ``beta_end`` (Ho et al.: 1e-4 to 0.02).
    * ``scaled_linear``: evenly in ``sqrt(beta)`` (latent diffusion; there 0.00085 to 0.012).
    * ``cosine``: ``abar(t) = cos^2((t/T + s) / (1 + s) * pi/2)``, betas capped at 0.999 (Nichol &
      Dhariwal); ``beta_start``/``beta_end`` are unused.
    """
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    if kind == "cosine":
        def abar(u: float) -> float:
            return math.cos((u + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        betas = [min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), 0.999) for i in range(num_steps)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {kind!r}; use linear, scaled_linear or cosine")


def respaced_timesteps(num_train_steps: int, steps: int | None) -> Tensor:
    """The kept training time steps, ascending, ``(steps,)`` long.

    ``steps`` evenly spaced indices from 0 to ``num_train_steps - 1`` inclusive, rounded (improved
    DDPM's ``space_timesteps``); ``None`` keeps all, 1 keeps the last.
    """
    return torch.tensor(uniform_timesteps(num_train_steps, steps))


class DDPMSchedule(NoiseSchedule):
    """DDPM forward process (1000 steps; linear, cosine or scaled-linear betas) and its respaced chains."""

    label = "ddpm"
    prediction_types = PREDICTION_TYPES

    class Config(ComponentConfig):
        num_train_steps: int = Field(1000, ge=2, description="discrete training time steps")
        beta_schedule: Literal["linear", "cosine", "scaled_linear"] = Field(
            "linear", description="how betas grow over time (the paper: standard DDPM, linear)")
        beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="first beta (linear, scaled_linear)")
        beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="last beta (linear, scaled_linear)")
        # Recipes written before samplers became plug-ins chose the sampler here; these three fields
        # name the sampler used when sample.sampler / evaluate.sampler are null.
        sampler: Literal["ddpm", "ddim"] = Field(
            "ddpm", description="sampler used when the recipe's sample/evaluate sampler is null (older "
            "recipes; prefer sample.sampler and evaluate.sampler, which take any sampler plug-in)")
        ddim_eta: float = Field(0.0, ge=0.0, description="eta of that sampler when it is ddim (older recipes)")
        variance: Literal["posterior", "beta"] = Field(
            "posterior", description="variance of that sampler when it is ddpm (older recipes)")
        clip_x0: float | None = Field(
            None, gt=0.0, description="clamp the predicted x0 to [-clip_x0, clip_x0] while sampling; "
            "unset for latents, whose range is not bounded")
        train_timesteps: Literal["uniform", "log_snr_normal"] = Field(
            "uniform", description="how training draws time steps: uniform over all steps (the paper), or "
            "log_snr_normal: each step's share of a normal distribution over log(SNR) (EDM's log-normal "
            "noise levels, Karras et al. 2022), centred by log_snr_mean")
        log_snr_mean: float = Field(
            0.0, allow_inf_nan=False, description="log_snr_normal: mean log(SNR) of the drawn steps (0 = as "
            "much signal as noise; lower draws noisier steps; EDM's images: +2.4)")
        log_snr_std: float = Field(2.0, gt=0.0, allow_inf_nan=False,
                                   description="log_snr_normal: spread of the drawn log(SNR)")
        uniform_share: float = Field(
            0.0, ge=0.0, le=1.0, description="log_snr_normal: share of the draws made uniformly over all "
            "steps instead, so that every level the samplers visit keeps some training")
        loss_weighting: LossWeighting = Field("none", description=LOSS_WEIGHTING_HELP)
        min_snr_gamma: float = Field(5.0, gt=0.0, description="min_snr weighting: the SNR cap gamma (Hang et al.: 5)")
        sigma_data: float = Field(1.0, gt=0.0, description="edm weighting: the data's std (latents are scaled "
                                  "to unit std by the latent scale)")

        @model_validator(mode="after")
        def _ordered(self) -> "DDPMSchedule.Config":
            if self.beta_schedule != "cosine" and self.beta_end < self.beta_start:
                raise ValueError(f"beta_end ({self.beta_end}) must not be below beta_start ({self.beta_start})")
            return self

    def __init__(self, config: "DDPMSchedule.Config | None" = None, **overrides):
        self.config = cfg = self.resolve_config(config, overrides)
        betas = make_betas(cfg.beta_schedule, cfg.num_train_steps, beta_start=cfg.beta_start,
                           beta_end=cfg.beta_end)
        abar = torch.cumprod(1.0 - betas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas = betas
        self._alphas_cumprod = abar
        self.alphas_cumprod_prev = abar_prev
        # Tables used per example (float64; cast when applied).
        self._tables: dict[str, Tensor] = {
            "sqrt_abar": abar.sqrt(),
            "sqrt_one_minus_abar": (1.0 - abar).sqrt(),
            # q(x_{t-1} | x_t, x_0) = N(c1 x_0 + c2 x_t, var) (Ho et al. Eq. 7).
            "posterior_coef_x0": betas * abar_prev.sqrt() / (1.0 - abar),
            "posterior_coef_xt": (1.0 - betas).sqrt() * (1.0 - abar_prev) / (1.0 - abar),
            "posterior_variance": betas * (1.0 - abar_prev) / (1.0 - abar),
        }
        self._cast: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}
        self._train_probs: Tensor | None = None  # float32 timestep_probabilities(), made at the first draw

    # -- forward process -----------------------------------------------------------------------

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    @property
    def alphas_cumprod(self) -> Tensor:
        """``abar_t = prod_{s<=t} (1 - beta_s)``, float64, ``(num_train_steps,)``."""
        return self._alphas_cumprod

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        gen_device = generator.device if generator is not None else device
        if self.config.train_timesteps == "uniform":
            t = torch.randint(0, self.num_train_steps, (batch_size,), generator=generator, device=gen_device)
        else:
            if self._train_probs is None:
                self._train_probs = self.timestep_probabilities().float()
            probs = self._train_probs.to(gen_device)
            t = torch.multinomial(probs, batch_size, replacement=True, generator=generator)
        return t.to(device)

    def timestep_probabilities(self) -> Tensor:
        """``(num_train_steps,)`` float64: the chance that training draws each time step.

        ``log_snr_normal`` gives step ``t`` the mass of ``N(log_snr_mean, log_snr_std)`` over the
        log-SNR interval nearest to its ``log(abar_t / (1 - abar_t))`` (the outer steps take the
        tails), so the drawn noise levels follow the normal in log-SNR whatever the betas are;
        ``uniform_share`` of the mass is spread evenly over all steps.
        """
        n = self.num_train_steps
        if self.config.train_timesteps == "uniform":
            return torch.full((n,), 1.0 / n, dtype=torch.float64)
        abar = self._alphas_cumprod
        log_snr = abar.log() - (-abar).log1p()  # (n,), descending in t
        mid = (log_snr[1:] + log_snr[:-1]) / 2  # boundaries between neighbouring steps
        inf = torch.tensor([math.inf], dtype=torch.float64)
        upper, lower = torch.cat([inf, mid]), torch.cat([mid, -inf])
        mean, std = self.config.log_snr_mean, self.config.log_snr_std
        probs = torch.special.ndtr((upper - mean) / std) - torch.special.ndtr((lower - mean) / std)
        share = self.config.uniform_share
        return (1.0 - share) * probs / probs.sum() + share / n

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        a = self._at("sqrt_abar", t, x0)
        s = self._at("sqrt_one_minus_abar", t, x0)
        return (a * x0 + s * noise).to(x0.dtype)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor,
                        prediction_type: PredictionType) -> Tensor:
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "x0":
            return x0
        if prediction_type == "v":
            # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022).
            a = self._at("sqrt_abar", t, x0)
            s = self._at("sqrt_one_minus_abar", t, x0)
            return (a * noise - s * x0).to(x0.dtype)
        a, s = self._at("sqrt_abar", t, x0), self._at("sqrt_one_minus_abar", t, x0)
        return prediction_target(x0, noise, a, s, prediction_type, variance_preserving=True).to(x0.dtype)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))`` float64 at integer steps ``t``."""
        index = t.long().cpu()
        scales = self._tables["sqrt_abar"][index], self._tables["sqrt_one_minus_abar"][index]
        return scales[0].to(t.device), scales[1].to(t.device)

    def loss_weight(self, t: Tensor, prediction_type: PredictionType) -> Tensor | None:
        """``loss_weighting``'s x0-space weight times the squared x0 gain of ``prediction_type``
        (:mod:`vqvdm_core.interfaces.gaussian_path`); ``None`` for ``none`` (a plain mean, the paper)."""
        cfg = self.config
        if cfg.loss_weighting == "none":
            return None
        alpha, sigma = self.alpha_sigma(t)
        return loss_weight(alpha, sigma, prediction_type, cfg.loss_weighting, min_snr_gamma=cfg.min_snr_gamma,
                           sigma_data=cfg.sigma_data, variance_preserving=True)

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of the true posterior ``q(x_{t-1} | x_t, x_0)`` on the full chain.

        ``t`` ``(B,)``; the variance is ``(B, 1, ..., 1)``. At ``t = 0`` the variance is 0 and the
        mean is ``x_0``.
        """
        mean = self._at("posterior_coef_x0", t, x0) * x0 + self._at("posterior_coef_xt", t, x0) * x_t
        return mean.to(x0.dtype), self._at("posterior_variance", t, x0)

    # -- respacing -------------------------------------------------------------------------------

    def timesteps(self, steps: int | None = None) -> Tensor:
        """The training time steps a ``steps``-step sampler visits, ascending (``None``: all)."""
        return respaced_timesteps(self.num_train_steps, steps)

    def respaced_alphas_cumprod(self, steps: int | None = None) -> Tensor:
        """``abar`` at the kept steps, float64: a respaced chain shares the full chain's ``abar``."""
        return self.alphas_cumprod[self.timesteps(steps)]

    def respaced_betas(self, steps: int | None = None) -> Tensor:
        """The respaced chain's betas, ``1 - abar_k / abar_{previous kept}``, float64."""
        abar = self.respaced_alphas_cumprod(steps)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        return 1.0 - abar / prev

    def predict_x0_eps(self, prediction: Tensor, x_t: Tensor, level: Level | float,
                       prediction_type: PredictionType) -> tuple[Tensor, Tensor]:
        """The model's ``(x0, eps)`` estimates; with ``clip_x0``, x0 is clamped and eps recomputed."""
        if not isinstance(level, Level):
            level = Level.variance_preserving(0, float(level))
        x0, eps = super().predict_x0_eps(prediction, x_t, level, prediction_type)
        if self.config.clip_x0 is not None:
            x0 = x0.clamp(-self.config.clip_x0, self.config.clip_x0)
            eps = (x_t - level.alpha * x0) / level.sigma
        return x0, eps

    def default_sampler(self) -> str:
        """The sampler this schedule's (older) ``sampler`` field names."""
        return self.config.sampler

    def sampler_defaults(self, name: str) -> dict[str, Any]:
        """The older ``ddim_eta`` / ``variance`` fields, for ``ddim`` / ``ddpm`` when set away from
        their defaults (so that every other option of those samplers stays at the sampler's own)."""
        if name == "ddim" and self.config.ddim_eta != 0.0:
            return {"eta": self.config.ddim_eta}
        if name == "ddpm" and self.config.variance != "posterior":
            return {"variance": self.config.variance}
        return {}

    # -- helpers -------------------------------------------------------------------------------

    def _at(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """Table ``name`` at time steps ``t`` ``(B,)``, shaped ``(B, 1, ..., 1)`` to broadcast over
        ``like``, on ``like``'s device, in float64 for float64 input and float32 otherwise."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        key = (name, like.device, dtype)
        table = self._cast.get(key)
        if table is None:
            table = self._cast[key] = self._tables[name].to(device=like.device, dtype=dtype)
        t = t.to(like.device).long()
        return table[t].reshape(t.shape[0], *([1] * (like.ndim - 1)))

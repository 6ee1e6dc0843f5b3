"""EDM (``edm``; Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models"): the variance-exploding path ``x = x0 + sigma eps`` with sigma-preconditioning.

Table 1 of the paper, as this schedule implements it:

* training draws ``ln sigma ~ N(P_mean, P_std^2)`` (log-normal; -1.2 and 1.2);
* the network ``F`` is wrapped as ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` with
  ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
  ``c_in = 1 / sqrt(sigma^2 + sd^2)`` and ``c_noise = ln(sigma) / 4`` (``sd``: ``sigma_data``;
  ``time_scale`` multiplies ``c_noise``, 1 by default);
  here ``c_in`` is :meth:`~EDMSchedule.model_input`, ``c_noise`` is the time value the denoiser is
  given, and ``c_skip`` / ``c_out`` are how an ``x0`` denoiser's output becomes the x0 estimate
  (a denoiser of another prediction type gets ``c_in`` and the plain conversions);
* the loss weight ``lambda = (sigma^2 + sd^2) / (sigma sd)^2`` on ``||D - x0||^2``
  (``loss_weighting: edm``), which on ``F``'s output is ``lambda c_out^2 = 1``;
* the sampling chain ``sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho``, ``rho = 7``, then ``sigma = 0`` (Eq. 5); ``heun`` is Algorithm 1 on it.

``sigma_data`` defaults to 1: the diffusion stage's latents are scaled to unit std by the latent
scale (EDM's images in [-1, 1] used 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NoiseSchedule, PredictionType
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.interfaces.gaussian_path import (
    LOSS_WEIGHTING_HELP,
    PREDICTION_TYPES,
    Level,
    LossWeighting,
    loss_weight,
    prediction_target,
    prediction_to_x0_eps,
)
from vqvdm_core.interfaces.sampler import SamplingChain

__all__ = ["EDMSchedule", "karras_sigmas"]

DEFAULT_LEVELS = 1000
"""Levels of a chain asked for with ``steps=None``."""


def karras_sigmas(levels: int, *, sigma_max: float, sigma_min: float, rho: float) -> list[float]:
    """Karras et al.'s Eq. 5: ``levels`` noise levels from ``sigma_max`` down to ``sigma_min``,
    evenly spaced in ``sigma^(1/rho)`` (one level: ``sigma_max``)."""
    if levels == 1:
        return [sigma_max]
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return [(hi + i / (levels - 1) * (lo - hi)) ** rho for i in range(levels)]


class EDMSchedule(NoiseSchedule):
    """EDM: variance exploding ``x0 + sigma eps``, log-normal sigma, c_skip/c_out/c_in/c_noise, rho = 7."""

    label = "edm"
    spacings = ("uniform", "karras", "trailing")
    time_dtype = torch.float32
    prediction_types = PREDICTION_TYPES

    class Config(ComponentConfig):
        sigma_data: float = Field(1.0, gt=0.0, allow_inf_nan=False,
                                  description="the data's std sd (latents: 1, scaled by the latent scale; EDM's images: 0.5)")
        p_mean: float = Field(-1.2, allow_inf_nan=False, description="training: mean of ln(sigma)")
        p_std: float = Field(1.2, gt=0.0, allow_inf_nan=False, description="training: std of ln(sigma)")
        sigma_min: float = Field(0.002, gt=0.0, description="the chain's last noise level")
        sigma_max: float = Field(80.0, gt=0.0, description="the chain's first noise level")
        rho: float = Field(7.0, gt=0.0, description="the chain's spacing exponent (Eq. 5)")
        precondition: bool = Field(True, description="scale the input by c_in and, for an x0 denoiser, read its "
                                   "output F as D = c_skip x + c_out F (Table 1); false: a raw network")
        loss_weighting: LossWeighting = Field("edm", description=LOSS_WEIGHTING_HELP + " (edm: the paper's)")
        min_snr_gamma: float = Field(5.0, gt=0.0, description="min_snr weighting: the SNR cap gamma")
        time_scale: float = Field(1.0, gt=0.0, allow_inf_nan=False,
                                  description="the time value the denoiser sees is time_scale * ln(sigma) / 4 (1: "
                                  "Karras et al.'s c_noise, about -1.6..1.1; a U-Net's sinusoidal embedding sized "
                                  "for DDPM's 0..1000 steps resolves a wider range, e.g. 250)")

        @model_validator(mode="after")
        def _ordered(self) -> "EDMSchedule.Config":
            if self.sigma_min >= self.sigma_max:
                raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
            return self

    def __init__(self, config: "EDMSchedule.Config | None" = None, **overrides):
        self.config = self.resolve_config(config, overrides)

    # -- the path: time value c_noise = time_scale * ln(sigma) / 4 --------------------------------------

    def sigma_of(self, values: Tensor | float) -> Tensor | float:
        """``sigma`` of time values ``c_noise = time_scale * ln(sigma) / 4``."""
        factor = 4.0 / self.config.time_scale
        return torch.exp(factor * values) if isinstance(values, Tensor) else math.exp(factor * values)

    def time_of(self, sigma: float) -> float:
        """The time value ``c_noise = time_scale * ln(sigma) / 4`` of a noise level."""
        return self.config.time_scale * math.log(sigma) / 4.0

    def preconditioning(self, sigma: Tensor | float) -> tuple:
        """``(c_skip, c_out, c_in)`` at noise level ``sigma`` (Table 1)."""
        sd = self.config.sigma_data
        total = sigma * sigma + sd * sd
        root = total ** 0.5
        return sd * sd / total, sigma * sd / root, 1.0 / root

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        sigma = self.sigma_of(t.double())
        return torch.ones_like(sigma), sigma

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        """Time values ``time_scale * ln(sigma) / 4`` with ``ln sigma ~ N(p_mean, p_std^2)``."""
        gen_device = generator.device if generator is not None else device
        n = torch.randn(batch_size, generator=generator, device=gen_device)
        values = (self.config.p_mean + self.config.p_std * n) / 4.0
        if self.config.time_scale != 1.0:  # (the default's arithmetic exactly as before)
            values = values * self.config.time_scale
        return values.to(device=device, dtype=torch.float32)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return (x0 + self._sigma(t, x0) * noise).to(x0.dtype)

    def model_input(self, x_t: Tensor, t: Tensor) -> Tensor:
        if not self.config.precondition:
            return x_t
        return (x_t * self.preconditioning(self._sigma(t, x_t))[2]).to(x_t.dtype)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction_type: PredictionType) -> Tensor:
        sigma = self._sigma(t, x0)
        if self.config.precondition and prediction_type == "x0":
            c_skip, c_out, _ = self.preconditioning(sigma)
            return ((x0 - c_skip * (x0 + sigma * noise)) / c_out).to(x0.dtype)  # F's target (Eq. 8)
        return prediction_target(x0, noise, torch.ones_like(sigma), sigma, prediction_type).to(x0.dtype)

    def loss_weight(self, t: Tensor, prediction_type: PredictionType) -> Tensor | None:
        cfg = self.config
        if cfg.loss_weighting == "none":
            return None
        alpha, sigma = self.alpha_sigma(t)
        gain = self.preconditioning(sigma)[1] if cfg.precondition and prediction_type == "x0" else None
        return loss_weight(alpha, sigma, prediction_type, cfg.loss_weighting, min_snr_gamma=cfg.min_snr_gamma,
                           sigma_data=cfg.sigma_data, gain=gain)

    def predict_x0_eps(self, prediction: Tensor, x_t: Tensor, level: Level | float,
                       prediction_type: PredictionType) -> tuple[Tensor, Tensor]:
        if not isinstance(level, Level):
            raise TypeError("the edm schedule reads predictions at a Level (it has no abar)")
        if self.config.precondition and prediction_type == "x0":
            c_skip, c_out, _ = self.preconditioning(level.sigma)
            x0 = c_skip * x_t + c_out * prediction
            return x0, (x_t - x0) / level.sigma
        return prediction_to_x0_eps(prediction, x_t, level.alpha, level.sigma, prediction_type)

    # -- chains ------------------------------------------------------------------------------------

    def chain(self, steps: int | None = None, *, start: float | None = None,
              spacing: str = "uniform") -> SamplingChain:
        """Karras et al.'s Eq. 5 chain (``uniform``, ``karras`` and ``trailing`` all name it: even in
        ``sigma^(1/rho)``, no call at ``sigma = 0``) from ``sigma_max`` (or the time value ``start``)
        to ``sigma_min``; ``None``: 1000 levels."""
        self.check_spacing(spacing)
        cfg = self.config
        levels = DEFAULT_LEVELS if steps is None else int(steps)
        if levels < 1:
            raise UserError(f"sampling steps must be at least 1, got {steps}")
        top = cfg.sigma_max if start is None else self.sigma_of(float(start))
        if not top > cfg.sigma_min:
            raise UserError(f"the start time value {start} is a noise level ({top:.4g}) at or below sigma_min "
                            f"({cfg.sigma_min})")
        sigmas = karras_sigmas(levels, sigma_max=top, sigma_min=cfg.sigma_min, rho=cfg.rho)
        sigmas[0] = top  # exact ends: (hi + 0)^rho and (lo)^rho round off by an ulp
        if levels > 1:
            sigmas[-1] = cfg.sigma_min
        return self._chain(tuple(self.time_of(s) for s in sigmas), tuple(sigmas))

    def chain_at(self, times: Sequence[float]) -> SamplingChain:
        """The chain at the time values ``times`` (``time_scale * ln(sigma) / 4``, descending)."""
        return self._chain(tuple(float(v) for v in times), tuple(self.sigma_of(float(v)) for v in times))

    @staticmethod
    def _chain(times: tuple[float, ...], sigmas: tuple[float, ...]) -> SamplingChain:
        return SamplingChain(timesteps=times, alphas=(1.0,) * len(sigmas), sigmas=sigmas, space="sigma")

    # -- helpers -------------------------------------------------------------------------------

    def _sigma(self, t: Tensor, like: Tensor) -> Tensor:
        """``sigma`` of the time values ``(B,)``, shaped ``(B, 1, ..., 1)`` on ``like``'s device."""
        values = torch.as_tensor(t, device=like.device)
        values = values.double() if like.dtype == torch.float64 else values.float()
        return self.sigma_of(values).reshape(values.shape[0], *([1] * (like.ndim - 1)))

"""Rectified flow / flow matching (``flow``): the linear path ``x_t = (1 - t) x0 + t eps``, ``t`` in [0, 1].

Liu et al. 2022 ("Flow Straight and Fast") and Lipman et al. 2022 ("Flow Matching") train a network
to regress the velocity ``dx_t / dt = eps - x0`` (prediction type ``velocity``) at ``t`` drawn
over ``[0, 1]``; Esser et al. 2024 (Stable Diffusion 3, Sec. 3.1 and 5.1) found which draw of ``t``
trains best: the logit-normal ``t = sigmoid(m + s n)`` (their ``rf/lognorm(0.00, 1.00)``) or the
mode-sampled density with heavy tails (Eq. 20), and a *timestep shift* for larger latents,
``t' = shift t / (1 + (shift - 1) t)`` (their Eq. 23; Open-Sora 1.2's shift), which moves both the
training draw and the sampling chain towards the noise end. Sampling integrates the ODE from pure
noise (``t = 1``) to ``t = 0``: ``euler`` is SD3's sampler, and every other sampler runs on the same
chain (an epsilon denoiser needs ``t_max < 1``, where its x0 estimate exists).

The denoiser is given ``time_scale * t`` (SD3 feeds ``1000 t`` to a time embedding built for
DDPM's integer steps, as ours are).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NoiseSchedule, PredictionType
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.interfaces.gaussian_path import (
    LOSS_WEIGHTING_HELP,
    PREDICTION_TYPES,
    LossWeighting,
    loss_weight,
    prediction_target,
)
from vqvdm_core.interfaces.sampler import SamplingChain

__all__ = ["FlowSchedule", "shift_time", "unshift_time"]

DEFAULT_LEVELS = 1000
"""Levels of a chain asked for with ``steps=None`` (a continuous path has no "every step")."""


def shift_time(t: Tensor | float, shift: float) -> Tensor | float:
    """SD3's timestep shift ``shift t / (1 + (shift - 1) t)``: keeps 0 and 1, moves the rest towards
    1 (the noise end) for ``shift > 1``; 1 is the identity."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def unshift_time(t: Tensor | float, shift: float) -> Tensor | float:
    """The inverse of :func:`shift_time`: ``t / (shift - (shift - 1) t)``."""
    return t / (shift - (shift - 1.0) * t)


class FlowSchedule(NoiseSchedule):
    """Rectified flow: ``x_t = (1 - t) x0 + t eps``, velocity target, logit-normal ``t``, SD3's shift."""

    label = "flow"
    spacings = ("uniform", "trailing")
    time_dtype = torch.float32
    prediction_types = PREDICTION_TYPES

    class Config(ComponentConfig):
        train_time: Literal["uniform", "logit_normal", "mode"] = Field(
            "logit_normal", description="how training draws t (before the shift): uniform on [0, 1]; "
            "logit_normal, sigmoid(logit_mean + logit_std n) (SD3's best, rf/lognorm(0, 1)); mode, SD3's "
            "Eq. 20 with mode_scale (heavier tails than logit_normal)")
        logit_mean: float = Field(0.0, allow_inf_nan=False, description="logit_normal: m, the mean of logit(t)")
        logit_std: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="logit_normal: s, the std of logit(t)")
        mode_scale: float = Field(1.29, description="mode: SD3's scale s of Eq. 20, in [-1, 2 / (pi - 2)] "
                                  "(1.29: SD3's rf/mode(1.29))")
        shift: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="timestep shift of training draws "
                             "and sampling chains, t' = shift t / (1 + (shift - 1) t) (SD3: 3.0 at 1024^2; "
                             "1: none)")
        sample_shift: float | None = Field(None, gt=0.0, allow_inf_nan=False,
                                           description="the sampling chains' shift if it differs; null: shift")
        t_max: float = Field(1.0, gt=0.0, le=1.0, description="t of a chain's first level before the shift (1: "
                             "pure noise; an epsilon denoiser needs less)")
        t_min: float = Field(1e-3, gt=0.0, lt=1.0, description="uniform spacing: t of a chain's last level before "
                             "the shift (diffusers / SD3: 1 / 1000)")
        time_scale: float = Field(1000.0, gt=0.0, allow_inf_nan=False,
                                  description="the denoiser is given time_scale * t (SD3: 1000)")
        loss_weighting: LossWeighting = Field("none", description=LOSS_WEIGHTING_HELP)
        min_snr_gamma: float = Field(5.0, gt=0.0, description="min_snr weighting: the SNR cap gamma")
        sigma_data: float = Field(1.0, gt=0.0, description="edm weighting: the data's std")

        @model_validator(mode="after")
        def _monotone_mode(self) -> "FlowSchedule.Config":
            if not -1.0 <= self.mode_scale <= 2.0 / (math.pi - 2.0):
                raise ValueError(f"mode_scale must lie in [-1, {2.0 / (math.pi - 2.0):.4f}] for Eq. 20's density "
                                 f"to be monotone, got {self.mode_scale}")
            return self

    def __init__(self, config: "FlowSchedule.Config | None" = None, **overrides):
        self.config = self.resolve_config(config, overrides)

    # -- the path --------------------------------------------------------------------------------

    def t_of(self, values: Tensor) -> Tensor:
        """``t`` of the denoiser's time values (``values / time_scale``), float64 for float64 input else float32."""
        dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
        return values.to(dtype) / self.config.time_scale

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        u = t.double() / self.config.time_scale
        return 1.0 - u, u

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        """Time values ``time_scale * shift(t)`` with ``t`` from ``train_time``'s density."""
        cfg = self.config
        gen_device = generator.device if generator is not None else device
        if cfg.train_time == "logit_normal":
            n = torch.randn(batch_size, generator=generator, device=gen_device)
            t = torch.sigmoid(cfg.logit_mean + cfg.logit_std * n)
        else:
            u = torch.rand(batch_size, generator=generator, device=gen_device)
            if cfg.train_time == "uniform":
                t = u
            else:  # SD3 Eq. 20: f_mode(u; s) = 1 - u - s (cos^2(pi u / 2) - 1 + u)
                t = 1.0 - u - cfg.mode_scale * (torch.cos(math.pi / 2.0 * u) ** 2 - 1.0 + u)
        t = shift_time(t, cfg.shift)
        return (t * cfg.time_scale).to(device=device, dtype=torch.float32)

    def time_density(self, t: Tensor) -> Tensor:
        """The density of the training draw of ``t`` (after the shift) at ``t`` in (0, 1), float64:
        the draws' law, for tests and plots."""
        cfg = self.config
        t = t.double()
        u = unshift_time(t, cfg.shift)
        du_dt = cfg.shift / (cfg.shift - (cfg.shift - 1.0) * t) ** 2  # d unshift / dt
        if cfg.train_time == "uniform":
            return du_dt * torch.ones_like(u)
        if cfg.train_time == "logit_normal":
            logit = torch.log(u) - torch.log1p(-u)
            z = (logit - cfg.logit_mean) / cfg.logit_std
            return du_dt * torch.exp(-0.5 * z * z) / (cfg.logit_std * math.sqrt(2 * math.pi) * u * (1.0 - u))
        # mode: t = f(v) with v uniform: density 1 / |f'(v)| at v = f^-1(t), solved by bisection (f decreasing)
        s = cfg.mode_scale
        lo, hi = torch.zeros_like(u), torch.ones_like(u)
        for _ in range(60):
            mid = (lo + hi) / 2
            f = 1.0 - mid - s * (torch.cos(math.pi / 2.0 * mid) ** 2 - 1.0 + mid)
            lo, hi = torch.where(f > u, mid, lo), torch.where(f > u, hi, mid)
        v = (lo + hi) / 2
        slope = -1.0 - s * (-math.pi / 2.0 * torch.sin(math.pi * v) + 1.0)
        return du_dt / slope.abs()

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        u = self._broadcast(t, x0)
        return ((1.0 - u) * x0 + u * noise).to(x0.dtype)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction_type: PredictionType) -> Tensor:
        u = self._broadcast(t, x0)
        return prediction_target(x0, noise, 1.0 - u, u, prediction_type).to(x0.dtype)

    def loss_weight(self, t: Tensor, prediction_type: PredictionType) -> Tensor | None:
        cfg = self.config
        if cfg.loss_weighting == "none":
            return None
        alpha, sigma = self.alpha_sigma(t)
        return loss_weight(alpha, sigma, prediction_type, cfg.loss_weighting, min_snr_gamma=cfg.min_snr_gamma,
                           sigma_data=cfg.sigma_data)

    # -- chains ------------------------------------------------------------------------------------

    def chain(self, steps: int | None = None, *, start: float | None = None,
              spacing: str = "uniform") -> SamplingChain:
        """``steps`` levels from ``t_max`` (or the time value ``start``), then shifted by the sampling
        shift (``None``: 1000 levels):

        * ``uniform``: ``u_i`` evenly from ``u_0`` to ``t_min`` inclusive, ``t_i = shift(u_i)``
          (SD3's and diffusers' ``FlowMatchEulerDiscreteScheduler`` grid, which at a shift other
          than 1 ends at ``shift(1 / 1000)``: ``t_min`` set to that gives diffusers' levels exactly);
          the last call is made all but clean, so a second-order step's final Euler step is short;
        * ``trailing``: ``t_i = shift(u_0 (1 - i / steps))``: no call near the clean end, every call
          spent on a real step (better at one or two calls for first-order samplers).
        """
        self.check_spacing(spacing)
        cfg = self.config
        shift = cfg.sample_shift if cfg.sample_shift is not None else cfg.shift
        levels = DEFAULT_LEVELS if steps is None else int(steps)
        if levels < 1:
            raise UserError(f"sampling steps must be at least 1, got {steps}")
        if start is None:
            first = cfg.t_max
        else:
            t_start = float(start) / cfg.time_scale
            if not 0.0 < t_start <= 1.0:
                raise UserError(f"the start time value must lie in (0, {cfg.time_scale:g}] (t in (0, 1]), got {start}")
            first = unshift_time(t_start, shift)
        if spacing == "trailing" or levels == 1:
            grid = [first * (1.0 - i / levels) for i in range(levels)]
        else:
            last = cfg.t_min if cfg.t_min < first else first / levels  # a start below t_min: trailing's end
            grid = [first + i / (levels - 1) * (last - first) for i in range(levels - 1)] + [last]
        return self.chain_at([shift_time(u, shift) * cfg.time_scale for u in grid])

    def chain_at(self, times: Sequence[float]) -> SamplingChain:
        """The chain at the time values ``times`` (``time_scale * t``, descending)."""
        ts = [float(v) / self.config.time_scale for v in times]
        if not all(0.0 < t <= 1.0 for t in ts):
            raise UserError(f"a flow chain's levels need t in (0, 1] (time values in (0, {self.config.time_scale:g}])")
        return SamplingChain(timesteps=tuple(float(v) for v in times), alphas=tuple(1.0 - t for t in ts),
                             sigmas=tuple(ts), space="flow")

    # -- helpers -------------------------------------------------------------------------------

    def _broadcast(self, t: Tensor, like: Tensor) -> Tensor:
        """``t`` of the time values ``(B,)``, shaped ``(B, 1, ..., 1)`` on ``like``'s device."""
        u = self.t_of(torch.as_tensor(t, device=like.device))
        if like.dtype == torch.float64:
            u = u.double()
        return u.reshape(u.shape[0], *([1] * (like.ndim - 1)))

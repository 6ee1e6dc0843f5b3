"""The standard DDPM noise schedule (Ho et al. 2020) with respaced ancestral and DDIM sampling.

Training uses all ``num_train_steps`` (1000) time steps. Sampling runs over any subset: ``steps=100``
keeps 100 evenly spaced steps (the paper times 100-step sampling) and recomputes each step's beta
from ``abar`` at the kept steps, as improved DDPM does (Nichol & Dhariwal 2021), so the same trained
model serves every step count. ``sampler="ddim"`` (Song et al. 2021) uses the same tables.

Every table is computed in float64 and cast to the input's dtype (float32 for half precision) when
applied; sampler coefficients are computed from float64 Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.config import ComponentConfig
from vqvdm_core.errors import ComponentError, UserError
from vqvdm_core.interfaces import ModelFn, NoiseSchedule, PredictionType
from vqvdm_plugins.schedules.samplers import SAMPLERS, gaussian_like

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
    if steps is None or steps == num_train_steps:
        return torch.arange(num_train_steps)
    if not 1 <= steps <= num_train_steps:
        raise UserError(f"sampling steps must be between 1 and {num_train_steps}, got {steps}")
    if steps == 1:
        return torch.tensor([num_train_steps - 1])
    stride = (num_train_steps - 1) / (steps - 1)
    return torch.tensor(sorted({round(i * stride) for i in range(steps)}))


class DDPMSchedule(NoiseSchedule):
    """DDPM forward process (1000 steps, linear betas) with respaced ancestral and DDIM samplers."""

    class Config(ComponentConfig):
        num_train_steps: int = Field(1000, ge=2, description="discrete training time steps")
        beta_schedule: Literal["linear", "cosine", "scaled_linear"] = Field(
            "linear", description="how betas grow over time (the paper: standard DDPM, linear)")
        beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="first beta (linear, scaled_linear)")
        beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="last beta (linear, scaled_linear)")
        sampler: Literal["ddpm", "ddim"] = Field(
            "ddpm", description="default update rule: ancestral DDPM or DDIM")
        ddim_eta: float = Field(0.0, ge=0.0, description="DDIM noise: 0 = deterministic, 1 = DDPM-like")
        variance: Literal["posterior", "beta"] = Field(
            "posterior", description="ancestral step variance: the true posterior's (fixed small) or beta "
            "(fixed large)")
        clip_x0: float | None = Field(
            None, gt=0.0, description="clamp the predicted x0 to [-clip_x0, clip_x0] while sampling; "
            "unset for latents, whose range is not bounded")

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
        self.alphas_cumprod = abar
        """``abar_t = prod_{s<=t} (1 - beta_s)``, float64, ``(num_train_steps,)``."""
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

    # -- forward process -----------------------------------------------------------------------

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_steps, (batch_size,), generator=generator, device=gen_device)
        return t.to(device)

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
        raise ValueError(f"unknown prediction type {prediction_type!r}; use epsilon, x0 or v")

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of the true posterior ``q(x_{t-1} | x_t, x_0)`` on the full chain.

        ``t`` ``(B,)``; the variance is ``(B, 1, ..., 1)``. At ``t = 0`` the variance is 0 and the
        mean is ``x_0``.
        """
        mean = self._at("posterior_coef_x0", t, x0) * x0 + self._at("posterior_coef_xt", t, x0) * x_t
        return mean.to(x0.dtype), self._at("posterior_variance", t, x0)

    # -- reverse process -----------------------------------------------------------------------

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

    def predict_x0_eps(self, prediction: Tensor, x_t: Tensor, abar_t: float,
                       prediction_type: PredictionType) -> tuple[Tensor, Tensor]:
        """The model's ``(x0, eps)`` estimates from its ``prediction`` at a step with ``abar_t``."""
        a, s = math.sqrt(abar_t), math.sqrt(1.0 - abar_t)
        if prediction_type == "epsilon":
            eps = prediction
            x0 = (x_t - s * eps) / a
        elif prediction_type == "x0":
            x0 = prediction
            eps = (x_t - a * x0) / s
        elif prediction_type == "v":
            x0 = a * x_t - s * prediction
            eps = s * x_t + a * prediction
        else:
            raise ValueError(f"unknown prediction type {prediction_type!r}; use epsilon, x0 or v")
        if self.config.clip_x0 is not None:
            x0 = x0.clamp(-self.config.clip_x0, self.config.clip_x0)
            eps = (x_t - a * x0) / s
        return x0, eps

    def sample(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        *,
        prediction_type: PredictionType,
        steps: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        name = sampler or self.config.sampler
        if name not in SAMPLERS:
            raise ComponentError(f"ddpm schedule: unknown sampler '{name}'; available: {', '.join(SAMPLERS)}")
        step_fn = SAMPLERS[name]
        kept = self.timesteps(steps).tolist()
        abar = self.alphas_cumprod[kept].tolist()  # Python floats: float64 coefficients
        x = gaussian_like(torch.empty(shape, device=device), generator)
        n = len(kept)
        for done, i in enumerate(reversed(range(n)), start=1):
            abar_t, abar_prev = abar[i], (abar[i - 1] if i > 0 else 1.0)
            t = torch.full((shape[0],), kept[i], device=device, dtype=torch.long)
            prediction = model_fn(x, t).to(x.dtype)
            x0, eps = self.predict_x0_eps(prediction, x, abar_t, prediction_type)
            x = step_fn(x, x0, eps, abar_t=abar_t, abar_prev=abar_prev, generator=generator,
                        variance=self.config.variance, eta=self.config.ddim_eta)
            if progress is not None:
                progress(done, n)
        return x

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

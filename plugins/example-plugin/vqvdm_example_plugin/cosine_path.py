"""``cosine_path``: a third-party noise schedule, the continuous-time cosine path
``x_t = cos(pi t / 2) x0 + sin(pi t / 2) eps`` over ``t`` in [0, 1].

The variance-preserving path of Nichol & Dhariwal's cosine schedule without its discretisation
(the "trigonometric" interpolant of Albergo & Vanden-Eijnden 2023, and the path of Salimans & Ho's
v-prediction, where ``v = d x_t / d(pi t / 2)``). A schedule plug-in says what its path is and how
training draws ``t``; everything else it inherits or reuses from vqvdm:

* the time value the denoiser sees (``1000 t``, a float: :attr:`time_dtype`);
* ``alpha_sigma`` (the path) and ``sample_timesteps`` (uniform ``t``);
* ``add_noise`` and ``training_target`` from :mod:`vqvdm_core.interfaces.gaussian_path`, which
  covers every prediction type (epsilon, x0, v, velocity) on any path;
* ``chain`` / ``chain_at``: levels evenly spaced in ``t``, each a (time value, alpha, sigma) triple,
  so every sampler (``ddim``, ``dpmpp_2m``, ``unipc``, ``ddpm``, ``euler``, ``heun``) runs on it
  unchanged, and long videos and continuations hold known frames with this path's scales.

Recipes write ``schedule: {name: cosine_path}``; ``t = 1`` is pure noise (``alpha = 0``), so train a
``v``, ``velocity`` or ``x0`` denoiser (an epsilon one is refused when its chain starts there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NoiseSchedule
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.interfaces.gaussian_path import PREDICTION_TYPES, prediction_target
from vqvdm_core.interfaces.sampler import SamplingChain


def cosine_scales(t: float) -> tuple[float, float]:
    """``(cos(pi t / 2), sin(pi t / 2))``, with exactly ``(0, 1)`` at ``t = 1``."""
    if t >= 1.0:
        return 0.0, 1.0
    return math.cos(math.pi / 2 * t), math.sin(math.pi / 2 * t)


class CosinePath(NoiseSchedule):
    """The continuous cosine path ``cos(pi t / 2) x0 + sin(pi t / 2) eps``, uniform ``t`` in training."""

    label = "cosine_path"
    spacings = ("uniform", "trailing")
    time_dtype = torch.float32
    prediction_types = PREDICTION_TYPES

    class Config(ComponentConfig):
        time_scale: float = Field(1000.0, gt=0.0, description="the denoiser is given time_scale * t")
        t_max: float = Field(1.0, gt=0.0, le=1.0, description="t of a chain's first level (1: pure noise)")

    def __init__(self, config: "CosinePath.Config | None" = None, **overrides):
        self.config = self.resolve_config(config, overrides)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        angle = t.double() / self.config.time_scale * (math.pi / 2)
        return torch.cos(angle), torch.sin(angle)

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        gen_device = generator.device if generator is not None else device
        t = torch.rand(batch_size, generator=generator, device=gen_device)
        return (t * self.config.time_scale).to(device)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self._scales(t, x0)
        return (alpha * x0 + sigma * noise).to(x0.dtype)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction_type: str) -> Tensor:
        alpha, sigma = self._scales(t, x0)
        return prediction_target(x0, noise, alpha, sigma, prediction_type).to(x0.dtype)

    def chain(self, steps: int | None = None, *, start: float | None = None,
              spacing: str = "uniform") -> SamplingChain:
        """``steps`` levels ``t_i = t_0 (1 - i / steps)`` (``None``: 1000), from ``t_max`` or ``start``."""
        self.check_spacing(spacing)
        levels = 1000 if steps is None else int(steps)
        if levels < 1:
            raise UserError(f"sampling steps must be at least 1, got {steps}")
        first = self.config.t_max if start is None else float(start) / self.config.time_scale
        return self.chain_at([first * (1.0 - i / levels) * self.config.time_scale for i in range(levels)])

    def chain_at(self, times: Sequence[float]) -> SamplingChain:
        scales = [cosine_scales(float(v) / self.config.time_scale) for v in times]
        return SamplingChain(timesteps=tuple(float(v) for v in times), alphas=tuple(a for a, _ in scales),
                             sigmas=tuple(s for _, s in scales), space="flow")

    def _scales(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.alpha_sigma(torch.as_tensor(t, device=like.device))
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        shape = (alpha.shape[0], *([1] * (like.ndim - 1)))
        return alpha.to(dtype).reshape(shape), sigma.to(dtype).reshape(shape)

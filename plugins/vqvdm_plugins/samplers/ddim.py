"""DDIM sampling (Song et al. 2021): deterministic at eta = 0, ancestral-like at eta = 1."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import Sampler
from vqvdm_core.interfaces.sampler import (
    DenoiseFn,
    SamplerConfig,
    SamplingChain,
    StepCallback,
    gaussian_like,
    notify,
)


class DDIMSampler(Sampler):
    """DDIM: move along the model's noise direction; eta sets the fresh noise (0: deterministic)."""

    class Config(SamplerConfig):
        eta: float = Field(0.0, ge=0.0, description="noise: 0 = deterministic (an ODE solver), 1 = the "
                           "ancestral step's variance")

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """``x_prev = alpha_prev x0 + sqrt(sigma_prev^2 - s^2) eps + s z`` (Song et al. Eq. 12, on any
        Gaussian path) with ``s^2 = eta^2 (sigma_prev^2 / sigma_t^2) v``, ``v`` the variance of the
        forward step ``prev -> t`` (:meth:`SamplingChain.transition`; on DDPM's chain
        ``1 - abar_t / abar_prev``, so ``s`` is Song et al.'s). At eta 0 this is Euler's method on the
        probability-flow ODE in either of its linear coordinates (``euler`` on the flow path)."""
        eta = self.config.eta
        for i in range(len(chain)):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            var_prev = chain.variance(i + 1)
            s = eta * math.sqrt(var_prev / chain.variance(i) * chain.transition(i)[1])
            direction = math.sqrt(max(var_prev - s * s, 0.0))
            x = chain.alpha(i + 1) * x0 + direction * eps
            if s > 0.0:
                x = x + s * gaussian_like(x, generator)
        return x

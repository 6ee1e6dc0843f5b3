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
        """``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - s^2) eps + s z`` (Song et al. Eq. 12)
        with ``s = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``."""
        eta = self.config.eta
        for i in range(len(chain)):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            abar_t, abar_prev = chain.abar(i), chain.abar(i + 1)
            s = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev))
            direction = math.sqrt(max(1.0 - abar_prev - s * s, 0.0))
            x = math.sqrt(abar_prev) * x0 + direction * eps
            if s > 0.0:
                x = x + s * gaussian_like(x, generator)
        return x

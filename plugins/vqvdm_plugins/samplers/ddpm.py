"""Ancestral DDPM sampling (Ho et al. 2020) over a respaced chain: the paper's sampler."""

from __future__ import annotations

import math
from typing import Literal

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


class DDPMSampler(Sampler):
    """Ancestral DDPM: draw each level from q(x_prev | x_t, x0_hat) (stochastic, one call per level)."""

    class Config(SamplerConfig):
        variance: Literal["posterior", "beta"] = Field(
            "posterior", description="step variance: the true posterior's (fixed small) or beta (fixed large)")

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """``x_prev = c0 x0_hat + c1 x_t + sqrt(var) z`` (Ho et al. Eqs. 6-7).

        On a respaced chain the step's beta is recomputed from the kept levels,
        ``beta = 1 - abar_t / abar_prev`` (Nichol & Dhariwal 2021). ``posterior`` uses the true
        posterior variance ``beta (1 - abar_prev) / (1 - abar_t)``, ``beta`` uses ``beta``. The step
        to the clean end adds no noise and returns the mean (the x0 estimate).
        """
        for i in range(len(chain)):
            x0, _ = denoise(x, i)
            notify(callback, chain, i, x, x0)
            abar_t, abar_prev = chain.abar(i), chain.abar(i + 1)
            beta = 1.0 - abar_t / abar_prev
            coef_x0 = math.sqrt(abar_prev) * beta / (1.0 - abar_t)
            coef_xt = math.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar_t)
            mean = coef_x0 * x0 + coef_xt * x
            if i == len(chain) - 1:
                x = mean
                continue
            var = beta * (1.0 - abar_prev) / (1.0 - abar_t) if self.config.variance == "posterior" else beta
            x = mean + math.sqrt(var) * gaussian_like(x, generator)
        return x

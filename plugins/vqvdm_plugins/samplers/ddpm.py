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
        """``x_prev = c0 x0_hat + c1 x_t + sqrt(var) z`` (Ho et al. Eqs. 6-7), on any Gaussian path.

        With ``x_t = a x_prev + sqrt(beta) z`` the forward step between the two levels
        (:meth:`SamplingChain.transition`; on DDPM's respaced chain ``beta = 1 - abar_t / abar_prev``,
        Nichol & Dhariwal 2021), the posterior is ``c0 = alpha_prev beta / sigma_t^2``,
        ``c1 = a sigma_prev^2 / sigma_t^2``; ``posterior`` uses its variance
        ``beta sigma_prev^2 / sigma_t^2``, ``beta`` uses ``beta``. The step to the clean end adds no
        noise and returns the mean (the x0 estimate).
        """
        for i in range(len(chain)):
            x0, _ = denoise(x, i)
            notify(callback, chain, i, x, x0)
            var_t, var_prev = chain.variance(i), chain.variance(i + 1)
            a, beta = chain.transition(i)
            coef_x0 = chain.alpha(i + 1) * beta / var_t
            coef_xt = a * var_prev / var_t
            mean = coef_x0 * x0 + coef_xt * x
            if i == len(chain) - 1:
                x = mean
                continue
            var = beta * var_prev / var_t if self.config.variance == "posterior" else beta
            x = mean + math.sqrt(var) * gaussian_like(x, generator)
        return x

"""``heun``: Karras et al.'s deterministic second-order sampler (EDM, 2022, Algorithm 1), as a
third-party sampler plug-in: one class, one entry-point line.

Written in the variance-exploding coordinates of the chain, ``x~ = x / alpha`` and
``sigma~ = sigma / alpha``, where the probability-flow ODE is ``dx~ / dsigma~ = eps``. Each step
takes an Euler step to the next level and corrects it with the slope there (the trapezoidal rule);
the step to the clean end (``sigma~ = 0``) stays an Euler step. Two denoiser calls per level but the
last: ``2 n - 1`` for an ``n``-level chain. Karras et al. pair it with their spacing of noise
levels: ``spacing: karras`` (the default here).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import Sampler
from vqvdm_core.interfaces.sampler import (
    SPACING_HELP,
    DenoiseFn,
    SamplerConfig,
    SamplingChain,
    Spacing,
    StepCallback,
    notify,
)


class Heun(Sampler):
    """Heun's second-order ODE sampler (Karras et al. 2022, Alg. 1): 2 calls per level."""

    class Config(SamplerConfig):
        spacing: Spacing = Field("karras", description=SPACING_HELP + "; karras: Karras et al.'s own")

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        del generator  # deterministic
        n = len(chain)
        for i in range(n):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            if i == n - 1:  # Euler to sigma~ = 0 lands on the x0 estimate
                return x0
            scaled = x / chain.alpha(i)
            sigma, sigma_next = chain.sigma(i) / chain.alpha(i), chain.sigma(i + 1) / chain.alpha(i + 1)
            euler = scaled + (sigma_next - sigma) * eps
            _, eps_next = denoise(euler * chain.alpha(i + 1), i + 1)
            x = (scaled + (sigma_next - sigma) * 0.5 * (eps + eps_next)) * chain.alpha(i + 1)
        return x

    def evaluations(self, levels: int) -> int:
        return 2 * levels - 1

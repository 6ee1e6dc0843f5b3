"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep solver
of the diffusion ODE in its data-prediction form, one denoiser call per level; with ``eta`` > 0 the
same multistep update on the diffusion SDE (the paper's SDE-DPM-Solver++(2M), Appendix B), which
injects fresh noise at every level as ancestral DDPM does."""

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


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M): second-order multistep solver on x0 estimates (ODE; SDE with eta > 0)."""

    class Config(SamplerConfig):
        eta: float = Field(0.0, ge=0.0, le=1.0, description="0: the ODE solver (deterministic); 1: "
                           "SDE-DPM-Solver++(2M), fresh noise at every level")

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """With ``lambda = log(alpha / sigma)``, ``h_i = lambda_{i+1} - lambda_i`` and ``g = eta h_i``::

            x_{i+1} = (sigma_{i+1} / sigma_i) e^{-g} x_i + alpha_{i+1} (1 - e^{-h_i - g}) D_i
                      + sigma_{i+1} sqrt(1 - e^{-2g}) z
            D_i = (1 + 1 / (2 r_i)) x0_i - 1 / (2 r_i) x0_{i-1},   r_i = h_{i-1} / h_i

        ``eta = 0`` is Algorithm 2 (``-alpha (e^{-h} - 1) D``). The first step has no history and
        uses ``D_0 = x0_0`` (first order, i.e. DDIM at eta 0); the step to the clean end
        (``lambda = inf``) is first order too, which returns ``x0``. A first level of pure noise
        (``alpha = 0``, ``lambda = -inf``: rectified flow at ``t = 1``) has ``h = inf``: its step is
        ``x_1 = sigma_1 x_0 + alpha_1 x0_0`` (plus fresh noise with eta), and the next step, whose
        ``r`` is infinite, is first order too.
        """
        eta = self.config.eta
        previous: Tensor | None = None
        h_previous = 0.0
        n = len(chain)
        for i in range(n):
            x0, _ = denoise(x, i)
            notify(callback, chain, i, x, x0)
            if i == n - 1:
                return x0
            h = chain.log_snr(i + 1) - chain.log_snr(i)
            if previous is None:
                d = x0
            else:
                r = h_previous / h
                d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * previous
            g = eta * h if eta > 0.0 else 0.0
            x = ((chain.sigma(i + 1) / chain.sigma(i)) * math.exp(-g)) * x \
                - chain.alpha(i + 1) * math.expm1(-h - g) * d
            if g > 0.0:
                x = x + chain.sigma(i + 1) * math.sqrt(-math.expm1(-2.0 * g)) * gaussian_like(x, generator)
            previous, h_previous = x0, h
        return x

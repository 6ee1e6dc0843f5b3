"""Heun's second-order method on the probability-flow ODE (``heun``; Karras et al. 2022, Algorithm 1).

Each step takes an Euler step to the next level and corrects it with the slope there (the
trapezoidal rule); the step to the clean end stays an Euler step, as in Karras et al. Two denoiser
calls per level but the last: ``2 n - 1`` for an ``n``-level chain. The coordinates are the
schedule's own by default (:mod:`.ode`): on ``edm`` this is Algorithm 1 on its sigma chain; on
``flow`` it is diffusers' ``FlowMatchHeunDiscreteScheduler``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vqvdm_core.interfaces.sampler import DenoiseFn, SamplingChain, StepCallback, notify
from vqvdm_plugins.samplers.ode import OdeSampler, coordinates, ode_space, slope


class HeunSampler(OdeSampler):
    """Heun's second-order ODE sampler (Karras et al. 2022, Alg. 1): 2 calls per level but the last."""

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """``y_e = y_i + dtau f_i``; ``y_{i+1} = y_i + dtau (f_i + f(y_e)) / 2`` (``f``: the slope of
        :func:`.ode.slope` from the model's estimates)."""
        del generator  # deterministic
        space = ode_space(self.config.space, chain)
        n = len(chain)
        for i in range(n):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            if i == n - 1:  # Euler to the clean end lands on the x0 estimate
                return x0
            (scale, time), (scale_next, time_next) = coordinates(chain, i, space), coordinates(chain, i + 1, space)
            y, step, f = x / scale, time_next - time, slope(x0, eps, space)
            x0_next, eps_next = denoise((y + step * f) * scale_next, i + 1)
            x = (y + step * 0.5 * (f + slope(x0_next, eps_next, space))) * scale_next
        return x

    def evaluations(self, levels: int) -> int:
        return 2 * levels - 1

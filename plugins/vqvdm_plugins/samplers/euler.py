"""Euler's method on the probability-flow ODE (``euler``): the first-order deterministic sampler.

In either linear ODE coordinate system (:mod:`.ode`) one Euler step with the model's estimate is the
DDIM step at eta 0, so ``euler`` and ``ddim`` agree to float precision on every path; ``euler`` is
the name the flow-matching literature gives it (SD3's and diffusers' ``FlowMatchEulerDiscreteScheduler``:
``x_{i+1} = x_i + (t_{i+1} - t_i) v``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vqvdm_core.interfaces.sampler import DenoiseFn, SamplingChain, StepCallback, notify
from vqvdm_plugins.samplers.ode import OdeSampler, coordinates, ode_space, slope


class EulerSampler(OdeSampler):
    """Euler's method on the probability-flow ODE: one denoiser call per level, deterministic."""

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """``y_{i+1} = y_i + (tau_{i+1} - tau_i) f(x0_i, eps_i)`` in the chosen coordinates; the step to
        the clean end lands on the x0 estimate."""
        del generator  # deterministic
        space = ode_space(self.config.space, chain)
        n = len(chain)
        for i in range(n):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            if i == n - 1:
                return x0
            (scale, time), (scale_next, time_next) = coordinates(chain, i, space), coordinates(chain, i + 1, space)
            x = (x / scale + (time_next - time) * slope(x0, eps, space)) * scale_next
        return x

"""Reverse-process update rules over a (possibly respaced) chain of time steps.

Each rule moves ``x_t`` to ``x_prev`` given the model's estimates of ``x_0`` and ``eps`` and the
cumulative products ``abar_t`` and ``abar_prev`` (``abar`` at the previous kept step, 1.0 after the
last one). The coefficients are computed from Python floats (float64) and applied to the tensors in
their own dtype. Noise is drawn from the caller's ``torch.Generator`` only, so a seed fixes the
whole chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["SAMPLERS", "SamplerStep", "ddim_step", "ddpm_step", "gaussian_like"]


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device, drawn from ``generator``.

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same
    numbers whatever device the model runs on.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def ddpm_step(x_t: Tensor, x0: Tensor, eps: Tensor, *, abar_t: float, abar_prev: float,
              generator: torch.Generator | None, variance: str = "posterior", eta: float = 0.0) -> Tensor:
    """Ancestral DDPM step (Ho et al. 2020): sample ``q(x_prev | x_t, x0_hat)``.

    On a respaced chain the step's beta is recomputed from the kept cumulative products,
    ``beta = 1 - abar_t / abar_prev`` (Nichol & Dhariwal 2021). ``variance="posterior"`` uses the
    true posterior variance ``beta (1 - abar_prev) / (1 - abar_t)`` ("fixed small"), ``"beta"`` uses
    ``beta`` ("fixed large"). The last step (``abar_prev == 1``) adds no noise and returns the mean.
    ``eps`` and ``eta`` are unused (the mean is written in terms of ``x0``).
    """
    del eps, eta
    beta = 1.0 - abar_t / abar_prev
    coef_x0 = math.sqrt(abar_prev) * beta / (1.0 - abar_t)
    coef_xt = math.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar_t)
    mean = coef_x0 * x0 + coef_xt * x_t
    if abar_prev >= 1.0:
        return mean
    var = beta * (1.0 - abar_prev) / (1.0 - abar_t) if variance == "posterior" else beta
    return mean + math.sqrt(var) * gaussian_like(x_t, generator)


def ddim_step(x_t: Tensor, x0: Tensor, eps: Tensor, *, abar_t: float, abar_prev: float,
              generator: torch.Generator | None, variance: str = "posterior", eta: float = 0.0) -> Tensor:
    """DDIM step (Song et al. 2021): ``sqrt(abar_prev) x0 + sqrt(1 - abar_prev - s^2) eps + s z``.

    ``s = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))``: ``eta = 0`` is
    deterministic, ``eta = 1`` has the ancestral step's (posterior) variance. ``variance`` is unused.
    """
    del variance
    sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev))
    direction = math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0))
    x_prev = math.sqrt(abar_prev) * x0 + direction * eps
    if sigma > 0.0:
        x_prev = x_prev + sigma * gaussian_like(x_t, generator)
    return x_prev


SamplerStep = Callable[..., Tensor]

SAMPLERS: dict[str, SamplerStep] = {"ddpm": ddpm_step, "ddim": ddim_step}
"""Sampler name -> update rule; ``DDPMSchedule.Config.sampler`` and ``sample(sampler=...)`` pick one."""

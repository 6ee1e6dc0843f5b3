"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"): the second-order multistep predictor UniP-2 with the corrector UniC, in the
data-prediction form, one denoiser call per level.

The corrector re-uses the model's output at the newly predicted state (the call the next step needs
anyway) to raise the order of accuracy of the step just taken, so it costs no extra call. Without it
(``corrector: false``) the predictor with ``B(h) = e^h - 1`` (``variant: bh2``) is DPM-Solver++(2M).
"""

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
    notify,
)


class UniPC(Sampler):
    """UniPC: the UniP-2 multistep predictor with the UniC corrector (deterministic, 1 call per level)."""

    class Config(SamplerConfig):
        corrector: bool = Field(True, description="apply UniC after each step (no extra denoiser call)")
        variant: Literal["bh1", "bh2"] = Field(
            "bh2", description="B(h): bh1 = h, bh2 = e^h - 1 (Zhao et al. recommend bh2 for guided sampling)")

    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """Level ``i`` to ``i + 1`` with ``h = lambda_{i+1} - lambda_i`` and ``x0_i`` the model's
        estimate at level ``i`` (``lambda = log(alpha / sigma)``)::

            base      = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} (e^{-h} - 1) x0_i
            predicted = base - alpha_{i+1} B(h) a D_1                      (UniP-2; first order: base)
            corrected = base - alpha_{i+1} B(h) (c_1 D_1 + c_2 (x0_{i+1} - x0_i))   (UniC)

        where ``D_1 = (x0_{i-1} - x0_i) / r``, ``r = (lambda_{i-1} - lambda_i) / h``, ``a = 1/2`` and
        ``(c_1, c_2)`` solve ``[[1, 1], [r, 1]] c = (b_1, b_2)`` with ``b_k = k! phi_{k+1}(-h) / B(h)``
        (``c_2 = 1/2`` alone after a first-order step). The first step and the step to the clean end
        are first order; the last correction is not needed (the clean end is the last x0 estimate).
        """
        del generator  # deterministic
        n = len(chain)
        state_before: Tensor | None = None  # x_{i-1}, before the predictor that gave x_i
        x0_before: Tensor | None = None     # the model's estimate at level i-1
        x0_older: Tensor | None = None      # ... at level i-2
        for i in range(n):
            x0, _ = denoise(x, i)
            notify(callback, chain, i, x, x0)
            if i == n - 1:
                return x0  # first order to sigma = 0 lands on the estimate (no correction needed)
            if self.config.corrector and x0_before is not None:
                x = self._correct(chain, i - 1, state_before, x0_before, x0_older, x0)
            state_before = x
            x = self._predict(chain, i, x, x0, x0_before if i > 0 else None)
            x0_older, x0_before = x0_before, x0
        return x

    def _b(self, h: float) -> float:
        return -h if self.config.variant == "bh1" else math.expm1(-h)

    def _base(self, chain: SamplingChain, i: int, x: Tensor, x0: Tensor) -> tuple[Tensor, float]:
        h = chain.log_snr(i + 1) - chain.log_snr(i)
        return (chain.sigma(i + 1) / chain.sigma(i)) * x - chain.alpha(i + 1) * math.expm1(-h) * x0, h

    def _predict(self, chain: SamplingChain, i: int, x: Tensor, x0: Tensor, x0_before: Tensor | None) -> Tensor:
        base, h = self._base(chain, i, x, x0)
        if x0_before is None:
            return base
        r = (chain.log_snr(i - 1) - chain.log_snr(i)) / h
        d1 = (x0_before - x0) / r
        return base - chain.alpha(i + 1) * self._b(h) * 0.5 * d1

    def _correct(self, chain: SamplingChain, i: int, x: Tensor, x0: Tensor, x0_before: Tensor | None,
                 x0_next: Tensor) -> Tensor:
        """The state at level ``i + 1`` from the step ``x`` (level ``i``) -> ``i + 1``, corrected
        with the model's estimate ``x0_next`` at the predicted state."""
        base, h = self._base(chain, i, x, x0)
        bh = self._b(h)
        if x0_before is None:  # UniC-1 after a first-order step
            return base - chain.alpha(i + 1) * bh * 0.5 * (x0_next - x0)
        hh = -h
        phi = math.expm1(hh) / hh - 1.0     # (e^hh - 1 - hh) / hh
        b1 = phi / bh                       # 1! phi_2(hh) / B(h), phi_k as in Zhao et al. Eq. 8
        phi = phi / hh - 0.5                # (e^hh - 1 - hh - hh^2 / 2) / hh^2
        b2 = phi * 2.0 / bh                 # 2! phi_3(hh) / B(h)
        r = (chain.log_snr(i - 1) - chain.log_snr(i)) / h
        c1 = (b1 - b2) / (1.0 - r)
        c2 = b1 - c1
        d1 = (x0_before - x0) / r
        return base - chain.alpha(i + 1) * bh * (c1 * d1 + c2 * (x0_next - x0))

"""Gaussian paths ``x_t = alpha(t) x0 + sigma(t) eps``: levels, prediction types and loss weightings.

Every forward process vqvdm trains with is such a path over its own time variable: DDPM's variance
preserving chain over integer steps (``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``), rectified
flow over ``t`` in ``[0, 1]`` (``alpha = 1 - t``, ``sigma = t``), EDM's variance exploding path
over ``sigma`` (``alpha = 1``). A :class:`Level` is one point of a path, with what every sampler
needs and nothing schedule-specific; the functions here turn a denoiser's raw prediction into the
``(x0, eps)`` pair and back on any path, and give the loss weights of :data:`LOSS_WEIGHTINGS`.

The arithmetic takes Python floats (one level, while sampling) or tensors shaped to broadcast over
the batch (training), so one formula serves both.

Prediction types (:data:`PREDICTION_TYPES`):

* ``epsilon``: the noise ``eps`` (DDPM, the paper);
* ``x0``: the clean sample;
* ``v``: ``alpha' eps - sigma' x0`` with ``(alpha', sigma') = (alpha, sigma) / sqrt(alpha^2 +
  sigma^2)`` (Salimans & Ho 2022; on a variance-preserving path ``alpha' = alpha``);
* ``velocity``: ``eps - x0``, the velocity ``dx_t / dt`` of the linear interpolant
  ``x_t = (1 - t) x0 + t eps`` (rectified flow / flow matching; SD3's target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "LOSS_WEIGHTINGS",
    "PREDICTION_TYPES",
    "Level",
    "LossWeighting",
    "loss_weight",
    "prediction_target",
    "prediction_to_x0_eps",
    "x0_gain",
    "x0_loss_weight",
]

PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "x0", "v", "velocity")

LossWeighting = Literal["none", "min_snr", "edm"]
LOSS_WEIGHTINGS: tuple[str, ...] = ("none", "min_snr", "edm")
LOSS_WEIGHTING_HELP = (
    "how the training loss weights each noise level: none (plain MSE on the network's output: the paper), "
    "min_snr (Hang et al. 2023: x0-space weight min(SNR, min_snr_gamma)), edm (Karras et al. 2022: "
    "x0-space weight (s^2 + sd^2) / (s sd)^2 with s = sigma / alpha and sd = sigma_data)")

Number = Any  # a float, or a tensor broadcasting over the batch


@dataclass(frozen=True)
class Level:
    """One point of a Gaussian path: ``x = alpha x0 + sigma eps``, seen by the denoiser at ``time``.

    ``abar`` is set on variance-preserving tables (DDPM), where ``alpha = sqrt(abar)`` and
    ``sigma = sqrt(1 - abar)`` are computed from it exactly as before levels existed, so that those
    chains keep their arithmetic bit for bit. The clean end of every chain is ``alpha = 1``,
    ``sigma = 0``.
    """

    time: float
    """The time value the denoiser is given (DDPM: the integer training step)."""
    alpha: float
    sigma: float
    abar: float | None = None

    @classmethod
    def variance_preserving(cls, time: float, abar: float) -> "Level":
        """The level of a variance-preserving table: ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``."""
        return cls(time=time, alpha=math.sqrt(abar), sigma=math.sqrt(1.0 - abar), abar=abar)

    @property
    def log_snr(self) -> float:
        """``lambda = log(alpha / sigma)`` (half the log signal-to-noise ratio; ``-inf`` at ``alpha = 0``)."""
        if self.abar is not None:
            return 0.5 * (math.log(self.abar) - math.log1p(-self.abar))
        if self.alpha == 0.0:
            return -math.inf
        if self.sigma == 0.0:
            return math.inf
        return math.log(self.alpha) - math.log(self.sigma)


def _unit_scales(alpha: Number, sigma: Number, variance_preserving: bool) -> tuple[Number, Number]:
    """``(alpha, sigma) / sqrt(alpha^2 + sigma^2)``: the scales of the variance-preserving path
    ``x / sqrt(alpha^2 + sigma^2)`` (``v`` is defined on it); unchanged on a VP path."""
    if variance_preserving:
        return alpha, sigma
    norm = (alpha * alpha + sigma * sigma) ** 0.5
    return alpha / norm, sigma / norm


def prediction_to_x0_eps(prediction: Tensor, x_t: Tensor, alpha: Number, sigma: Number, prediction_type: str,
                         *, variance_preserving: bool = False) -> tuple[Tensor, Tensor]:
    """The ``(x0, eps)`` a ``prediction_type`` prediction at ``x_t = alpha x0 + sigma eps`` stands for.

    ``epsilon`` needs ``alpha > 0`` (it cannot say what x0 is in pure noise); every type needs
    ``sigma > 0`` except ``x0``. ``variance_preserving`` says ``alpha^2 + sigma^2 = 1`` exactly
    (DDPM's tables), which keeps ``v``'s arithmetic as it always was.
    """
    if prediction_type == "epsilon":
        return (x_t - sigma * prediction) / alpha, prediction
    if prediction_type == "x0":
        return prediction, (x_t - alpha * prediction) / sigma
    if prediction_type == "v":
        if variance_preserving:
            return alpha * x_t - sigma * prediction, sigma * x_t + alpha * prediction
        norm = (alpha * alpha + sigma * sigma) ** 0.5
        a, s, x_t = alpha / norm, sigma / norm, x_t / norm  # the VP path x / norm
        return a * x_t - s * prediction, s * x_t + a * prediction
    if prediction_type == "velocity":  # u = eps - x0: x0 = (x - sigma u) / (alpha + sigma)
        total = alpha + sigma
        return (x_t - sigma * prediction) / total, (x_t + alpha * prediction) / total
    raise ValueError(f"unknown prediction type {prediction_type!r}; use one of: {', '.join(PREDICTION_TYPES)}")


def prediction_target(x0: Tensor, noise: Tensor, alpha: Number, sigma: Number, prediction_type: str,
                      *, variance_preserving: bool = False) -> Tensor:
    """What a ``prediction_type`` denoiser should output for ``x_t = alpha x0 + sigma noise``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "x0":
        return x0
    if prediction_type == "v":
        a, s = _unit_scales(alpha, sigma, variance_preserving)
        return a * noise - s * x0
    if prediction_type == "velocity":
        return noise - x0
    raise ValueError(f"unknown prediction type {prediction_type!r}; use one of: {', '.join(PREDICTION_TYPES)}")


def x0_gain(alpha: Number, sigma: Number, prediction_type: str, *, variance_preserving: bool = False) -> Number:
    """``|d x0 / d prediction|`` at fixed ``x_t``: an error ``e`` in the output is an error
    ``gain * e`` in the x0 estimate (``epsilon``: ``sigma / alpha``; ``x0``: 1; ``v``: ``sigma'``;
    ``velocity``: ``sigma / (alpha + sigma)``)."""
    if prediction_type == "epsilon":
        return sigma / alpha
    if prediction_type == "x0":
        return 1.0 + 0.0 * sigma
    if prediction_type == "v":
        return _unit_scales(alpha, sigma, variance_preserving)[1]
    if prediction_type == "velocity":
        return sigma / (alpha + sigma)
    raise ValueError(f"unknown prediction type {prediction_type!r}; use one of: {', '.join(PREDICTION_TYPES)}")


def x0_loss_weight(alpha: Tensor, sigma: Tensor, weighting: str, *, min_snr_gamma: float = 5.0,
                   sigma_data: float = 1.0) -> Tensor:
    """The weight of the squared x0 error at each level for ``weighting`` (see :data:`LOSS_WEIGHTINGS`).

    ``min_snr``: ``min(SNR, gamma)``, ``SNR = alpha^2 / sigma^2`` (Hang et al. 2023, whose epsilon
    weight ``min(SNR, gamma) / SNR`` is this times epsilon's squared gain); ``edm``:
    ``lambda(s) = (s^2 + sd^2) / (s sd)^2`` with ``s = sigma / alpha`` (Karras et al. 2022, Table 1).
    """
    if weighting == "min_snr":
        snr = (alpha / sigma) ** 2
        return torch.clamp(snr, max=min_snr_gamma)
    if weighting == "edm":
        s = sigma / alpha
        return (s * s + sigma_data**2) / (s * sigma_data) ** 2
    raise ValueError(f"unknown loss weighting {weighting!r}; use one of: {', '.join(LOSS_WEIGHTINGS)}")



def loss_weight(alpha: Tensor, sigma: Tensor, prediction_type: str, weighting: str, *, min_snr_gamma: float = 5.0,
                sigma_data: float = 1.0, variance_preserving: bool = False, gain: Tensor | None = None) -> Tensor | None:
    """Per-example weights ``(B,)`` float32 of the squared error of a ``prediction_type`` output, so
    that the loss is ``weighting``'s x0-space loss: ``x0_loss_weight * gain^2`` with ``gain`` the
    output's :func:`x0_gain` (or the one given, e.g. EDM's ``c_out``); ``None`` for ``none``."""
    if weighting == "none":
        return None
    weight = x0_loss_weight(alpha, sigma, weighting, min_snr_gamma=min_snr_gamma, sigma_data=sigma_data)
    if gain is None:
        gain = x0_gain(alpha, sigma, prediction_type, variance_preserving=variance_preserving)
    return (weight * gain * gain).float()

"""The noise schedule interface: the forward process and the chains the reverse process runs over."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from vqvdm_core.interfaces.configurable import Configurable
from vqvdm_core.interfaces.denoiser import ModelFn, PredictionType
from vqvdm_core.interfaces.sampler import (
    SamplingChain,
    StepCallback,
    reporting,
    resolve_sampler,
    respace,
    run_sampler,
)

__all__ = ["NoiseSchedule"]


class NoiseSchedule(Configurable, abc.ABC):
    """The forward process, and the chains of noise levels the reverse process runs over.

    A schedule owns ``q(x_t | x_0)`` (training time steps, ``add_noise``, training targets, the
    ``abar`` table) and respacing (:meth:`chain`); the update rules of the reverse process are
    :class:`Sampler` plug-ins. The chains are variance preserving:
    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
    """

    kind: ClassVar[str] = "schedule"

    @property
    @abc.abstractmethod
    def num_train_steps(self) -> int:
        """Number of discrete training time steps (1000 for the paper's DDPM)."""

    @property
    @abc.abstractmethod
    def alphas_cumprod(self) -> Tensor:
        """``abar_t`` for every training time step, ``(num_train_steps,)`` float64, descending."""

    @abc.abstractmethod
    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        """Training time steps ``(B,)`` long in ``[0, num_train_steps)``."""

    @abc.abstractmethod
    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``q(x_t | x_0)``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, broadcast over ``(B, ...)``."""

    @abc.abstractmethod
    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor,
                        prediction_type: PredictionType) -> Tensor:
        """The regression target for a denoiser that predicts ``prediction_type``."""

    def chain(self, steps: int | None = None, *, start: int | None = None,
              spacing: str = "uniform") -> SamplingChain:
        """The ``steps``-level chain a sampler runs over (``None``: every training step).

        It starts at training step ``start`` (default: the last); ``spacing`` is ``uniform`` (the
        paper's respacing), ``trailing``, ``karras`` or ``log_snr`` (see
        :func:`vqvdm_core.interfaces.sampler.respace`).
        """
        kept = respace(self.alphas_cumprod, steps, start=start, spacing=spacing)
        abar = self.alphas_cumprod[kept].tolist()
        return SamplingChain(timesteps=tuple(kept), alphas_cumprod=tuple(float(a) for a in abar))

    def predict_x0_eps(self, prediction: Tensor, x_t: Tensor, abar_t: float,
                       prediction_type: PredictionType) -> tuple[Tensor, Tensor]:
        """The model's ``(x0, eps)`` estimates from its ``prediction`` at a level with ``abar_t``."""
        a, s = math.sqrt(abar_t), math.sqrt(1.0 - abar_t)
        if prediction_type == "epsilon":
            return (x_t - s * prediction) / a, prediction
        if prediction_type == "x0":
            return prediction, (x_t - a * prediction) / s
        if prediction_type == "v":  # v = a eps - s x0 (Salimans & Ho 2022)
            return a * x_t - s * prediction, s * x_t + a * prediction
        raise ValueError(f"unknown prediction type {prediction_type!r}; use epsilon, x0 or v")

    def default_sampler(self) -> Any:
        """The sampler used when a caller names none: a registered name, a node ``{name: ..., ...}``
        or None (the caller must name one). Schedules that predate sampler plug-ins named it here."""
        return None

    def sampler_defaults(self, name: str) -> dict[str, Any]:
        """Options this schedule's config sets for the sampler ``name`` unless the caller sets them
        (schedules that predate sampler plug-ins held e.g. DDIM's eta); none by default."""
        return {}

    def sample(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        *,
        prediction_type: PredictionType,
        steps: int | None = None,
        sampler: Any = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        progress: Callable[[int, int], None] | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Run the reverse process from pure noise of ``shape`` with ``sampler``; return ``x_0``.

        A convenience over :func:`vqvdm_core.interfaces.sampler.run_sampler`: ``sampler`` is a built
        :class:`Sampler`, a registered name or ``None`` (:meth:`default_sampler`); ``steps``
        respaces the chain; ``progress(i, n)`` is called after each level.
        """
        return run_sampler(resolve_sampler(sampler, schedule=self), model_fn, self,
                           prediction_type=prediction_type, shape=shape, steps=steps, generator=generator,
                           device=device, callback=reporting(callback, progress))

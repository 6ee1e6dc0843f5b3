"""The noise schedule interface: the forward process and the chains the reverse process runs over."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces.configurable import Configurable
from vqvdm_core.interfaces.denoiser import ModelFn, PredictionType
from vqvdm_core.interfaces.gaussian_path import Level, prediction_to_x0_eps
from vqvdm_core.interfaces.sampler import (
    SPACINGS,
    SamplingChain,
    StepCallback,
    reporting,
    resolve_sampler,
    respace,
    run_sampler,
)

__all__ = ["NoiseSchedule", "schedule_name"]


def schedule_name(schedule: "NoiseSchedule") -> str:
    """How messages name a schedule: its ``label`` (the registered name of the built-in ones), else
    its class name."""
    return str(getattr(schedule, "label", None) or type(schedule).__name__)


class NoiseSchedule(Configurable, abc.ABC):
    """A Gaussian path ``x_t = alpha(t) x0 + sigma(t) eps``, its training draw, and its sampling chains.

    A schedule owns the forward process over its own time variable, whose values are what the
    denoiser is given (:attr:`time_dtype`: DDPM's integer steps, a float ``t`` elsewhere):

    * :meth:`sample_timesteps` draws training time values; :meth:`alpha_sigma` maps time values to
      the path's scales; :meth:`add_noise` and :meth:`training_target` follow from them (and from
      the prediction type, :mod:`vqvdm_core.interfaces.gaussian_path`);
    * :meth:`loss_weight` is the training loss's weighting hook (EDM's and min-SNR weights are
      weightings of a path, not paths of their own);
    * :meth:`model_input` and :meth:`predict_x0_eps` are its contract with a raw network: the input
      scaling (EDM's ``c_in``) and how an output becomes ``(x0, eps)`` (EDM's ``c_skip`` / ``c_out``);
    * :meth:`chain` builds the levels a sampler runs over (:class:`SamplingChain`: time value,
      alpha, sigma per level), by one of its :attr:`spacings`; :meth:`chain_at` builds one at any
      time values, so a sampler can space its own levels.

    The update rules of the reverse process are :class:`Sampler` plug-ins. Schedules written before
    other paths (a variance-preserving ``alphas_cumprod`` table over integer steps) keep working:
    the defaults here are that table's.
    """

    kind: ClassVar[str] = "schedule"
    spacings: ClassVar[tuple[str, ...]] = SPACINGS
    """The spacing names :meth:`chain` takes (the default: a variance-preserving table's)."""
    time_dtype: ClassVar[torch.dtype] = torch.long
    """The dtype of the time values the denoiser is given (float32 for continuous time)."""
    prediction_types: ClassVar[tuple[str, ...]] = ("epsilon", "x0", "v")
    """The prediction types a denoiser trained on this path may have."""

    # -- the path --------------------------------------------------------------------------------

    @property
    def num_train_steps(self) -> int:
        """Number of discrete training time steps (1000 for the paper's DDPM); continuous paths have none."""
        raise NotImplementedError(f"{type(self).__name__} has continuous time: no discrete training steps")

    @property
    def alphas_cumprod(self) -> Tensor:
        """``abar_t`` for every training step of a variance-preserving table, ``(num_train_steps,)``
        float64, descending; other paths have none."""
        raise NotImplementedError(f"{type(self).__name__} is not a variance-preserving table: use alpha_sigma")

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, sigma)`` float64 at time values ``t`` (any shape). Default: the
        variance-preserving table at integer steps."""
        abar = self.alphas_cumprod[t.long().cpu()].to(t.device)
        return abar.sqrt(), (1.0 - abar).sqrt()

    @abc.abstractmethod
    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        """Training time values ``(B,)`` (dtype :attr:`time_dtype`), from the schedule's training density."""

    @abc.abstractmethod
    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``q(x_t | x_0)``: ``alpha(t) x0 + sigma(t) noise``, broadcast over ``(B, ...)``."""

    @abc.abstractmethod
    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor,
                        prediction_type: PredictionType) -> Tensor:
        """The regression target for a denoiser that predicts ``prediction_type``."""

    def loss_weight(self, t: Tensor, prediction_type: PredictionType) -> Tensor | None:
        """Per-example weights ``(B,)`` of the squared error of the network's output at time values
        ``t``, or ``None`` for a plain mean (the default, and the paper's DDPM loss)."""
        return None

    def model_input(self, x_t: Tensor, t: Tensor) -> Tensor:
        """What the network is given for the state ``x_t`` at time values ``t``: ``x_t`` itself by
        default; EDM's preconditioning scales it by ``c_in``."""
        return x_t

    def predict_x0_eps(self, prediction: Tensor, x_t: Tensor, level: Level | float,
                       prediction_type: PredictionType) -> tuple[Tensor, Tensor]:
        """The model's ``(x0, eps)`` estimates from its ``prediction`` for the state ``x_t`` at ``level``
        (a :class:`~vqvdm_core.interfaces.gaussian_path.Level`; a float is a variance-preserving
        level's ``abar``, the form this took before other paths)."""
        if not isinstance(level, Level):
            level = Level.variance_preserving(0, float(level))
        return prediction_to_x0_eps(prediction, x_t, level.alpha, level.sigma, prediction_type,
                                    variance_preserving=level.abar is not None)

    def check_prediction_type(self, prediction_type: str, chain: SamplingChain | None = None) -> None:
        """Raise :class:`~vqvdm_core.errors.UserError` if a ``prediction_type`` denoiser cannot be
        trained on this path or read on ``chain`` (epsilon says nothing of x0 where ``alpha = 0``)."""
        if prediction_type not in self.prediction_types:
            raise UserError(f"the {schedule_name(self)} schedule takes prediction types "
                            f"{', '.join(self.prediction_types)}; the denoiser predicts '{prediction_type}'")
        if chain is not None and prediction_type == "epsilon" and chain.alpha(0) == 0.0:
            raise UserError("an epsilon denoiser cannot be sampled from pure noise (alpha = 0 at the chain's "
                            "first level: its x0 estimate is undefined there); start the chain below it (flow: "
                            "t_max < 1) or train a velocity, v or x0 denoiser")

    # -- chains ------------------------------------------------------------------------------------

    def chain(self, steps: int | None = None, *, start: float | None = None,
              spacing: str = "uniform") -> SamplingChain:
        """The ``steps``-level chain a sampler runs over (``None``: every training step).

        It starts at time value ``start`` (default: the noisiest); ``spacing`` is one of
        :attr:`spacings`. Default: a variance-preserving table's ``uniform`` (the paper's
        respacing), ``trailing``, ``karras`` or ``log_snr`` (see
        :func:`vqvdm_core.interfaces.sampler.respace`).
        """
        self.check_spacing(spacing)
        kept = respace(self.alphas_cumprod, steps, start=None if start is None else int(start), spacing=spacing)
        return self.chain_at(kept)

    def chain_at(self, times: Sequence[float]) -> SamplingChain:
        """The chain visiting the time values ``times``, noisiest first (default: integer steps of a
        variance-preserving table)."""
        abar = self.alphas_cumprod[list(times)].tolist()
        return SamplingChain(timesteps=tuple(times), alphas_cumprod=tuple(float(a) for a in abar))

    def check_spacing(self, spacing: str) -> None:
        """Raise :class:`~vqvdm_core.errors.UserError` for a spacing :meth:`chain` does not take."""
        if spacing not in self.spacings:
            raise UserError(f"unknown spacing '{spacing}' for the {schedule_name(self)} schedule; use one of: "
                            f"{', '.join(self.spacings)}")

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

"""The sampler interface: :class:`Sampler`, what it is given, and the driver that runs one.

A sampler is a small function over a *chain* of noise levels (k-diffusion's shape): it receives

* ``denoise(x, i) -> (x0, eps)``: the model's estimates of the clean sample and of the noise for the
  state ``x`` at level ``i`` of the chain (the schedule turns the denoiser's raw prediction, epsilon,
  x0, v or velocity, into both, so every sampler works for every prediction type);
* ``x``: the state at level 0 (pure noise, or a noised clip for SDEdit-style editing);
* a :class:`SamplingChain`: the levels it visits, noisiest first, each a point of the schedule's
  Gaussian path ``x = alpha x0 + sigma eps`` with the time value the denoiser sees
  (:class:`~vqvdm_core.interfaces.gaussian_path.Level`); one past the last level is the clean end
  (``alpha = 1``, ``sigma = 0``).

It returns the state at the clean end and reports each level through ``callback``
(:class:`SamplerStep`: the state the model saw and its x0 estimate). The schedule keeps the forward
process and builds chains (:meth:`~vqvdm_core.interfaces.NoiseSchedule.chain`, or any time values
through :meth:`~vqvdm_core.interfaces.NoiseSchedule.chain_at`); the update rules live in the
sampler plug-ins, written with the chain's ``alpha``, ``sigma`` and ``log_snr`` only, so they run
on every path (DDPM's variance-preserving chain, rectified flow, EDM). :func:`run_sampler` wires
the three together, and refuses a combination that cannot run before any denoiser call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import abc
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.errors import ComponentError, UserError
from vqvdm_core.interfaces.configurable import ComponentConfig, Configurable
from vqvdm_core.interfaces.gaussian_path import Level

if TYPE_CHECKING:
    from vqvdm_core.interfaces.denoiser import ModelFn, PredictionType
    from vqvdm_core.interfaces.schedule import NoiseSchedule
    from vqvdm_core.registry import Registry

__all__ = [
    "SPACINGS",
    "SPACING_HELP",
    "DenoiseFn",
    "Sampler",
    "SamplerConfig",
    "SamplerStep",
    "SamplingChain",
    "Spacing",
    "StepCallback",
    "gaussian_like",
    "notify",
    "reporting",
    "resolve_sampler",
    "sampler_label",
    "sampling_chain",
    "respace",
    "run_sampler",
    "uniform_timesteps",
]

Spacing = str
"""A spacing name: which ones a schedule takes is the schedule's (:attr:`NoiseSchedule.spacings`)."""
SPACINGS: tuple[str, ...] = ("uniform", "trailing", "karras", "log_snr")
"""The spacings of a variance-preserving table (:func:`respace`; the ``ddpm`` schedule)."""
SPACING_HELP = ("how the schedule spaces the chain's levels, a name the recipe's schedule takes (ddpm: uniform, "
                "the paper's respacing, trailing, karras or log_snr; flow: uniform (to t_min) or trailing, in shifted t; "
                "edm: uniform in sigma^(1/rho), aliases karras and trailing); checked against the schedule when "
                "the recipe loads")
"""The description of a sampler Config's ``spacing`` field."""

class SamplerConfig(ComponentConfig):
    """Base of a sampler plug-in's ``Config``: the ``spacing`` every sampler takes (subclasses add
    their own options, or change the default with ``spacing: Spacing = Field("karras", ...)``)."""

    spacing: Spacing = Field("uniform", pattern=r"^[a-z][a-z0-9_]*$", description=SPACING_HELP)


DenoiseFn = Callable[[Tensor, int], tuple[Tensor, Tensor]]
"""``denoise(x, i) -> (x0, eps)``: the model's estimates for state ``x`` at chain level ``i``."""


@dataclass(frozen=True)
class SamplerStep:
    """One level of a sampling chain, as reported to a callback."""

    index: int
    """Position in the chain, 0 = the noisiest level."""
    num_steps: int
    """Levels in the chain (denoiser calls of a one-call-per-level sampler)."""
    timestep: float
    """The time value the denoiser saw (DDPM: the integer training step)."""
    x: Tensor
    """The state at this level (what the denoiser saw)."""
    x0: Tensor
    """The denoiser's estimate of the clean sample from ``x``."""


StepCallback = Callable[[SamplerStep], None]


@dataclass(frozen=True)
class SamplingChain:
    """The levels a sampler visits, noisiest first; one past the last is the clean end.

    Level ``i`` is ``x = alphas[i] x0 + sigmas[i] eps``, and the denoiser sees ``timesteps[i]`` (the
    schedule's time value: DDPM's integer training step, ``1000 t`` for rectified flow, EDM's
    ``c_noise``). Levels are ordered by strictly ascending log-SNR; every level has ``sigma > 0``.
    Level ``len(chain)`` is the clean end: ``alpha = 1``, ``sigma = 0``, ``log_snr = inf``.

    A variance-preserving table (DDPM) gives ``alphas_cumprod`` instead of ``alphas`` / ``sigmas``
    (the form chains had before other paths): ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``,
    computed as they always were, so those chains' arithmetic is unchanged bit for bit. ``space``
    names the coordinates in which the path's probability-flow ODE is natural for a fixed-step
    solver (:attr:`space`); ``euler`` and ``heun`` use it by default.
    """

    timesteps: tuple[float, ...]
    alphas_cumprod: tuple[float, ...] | None = None
    alphas: tuple[float, ...] | None = None
    sigmas: tuple[float, ...] | None = None
    space: str = "sigma"
    """``sigma``: ``(x / alpha, sigma / alpha)``, where the ODE is ``dx~/dsigma~ = eps`` (Karras et
    al. 2022; DDPM, EDM); ``flow``: ``(x / (alpha + sigma), sigma / (alpha + sigma))``, the linear
    interpolant, where it is ``dy/dtau = eps - x0`` (rectified flow, whose first level has
    ``alpha = 0`` and no sigma coordinates)."""

    def __post_init__(self) -> None:
        n = len(self.timesteps)
        if self.alphas_cumprod is not None:
            if self.alphas is not None or self.sigmas is not None:
                raise ValueError("a sampling chain takes alphas_cumprod or alphas and sigmas, not both")
            if not n or n != len(self.alphas_cumprod):
                raise ValueError("a sampling chain needs one abar per time step and at least one step")
            if any(a <= b for a, b in zip(self.timesteps, self.timesteps[1:])):
                raise ValueError(f"a sampling chain's time steps must strictly descend, got {self.timesteps}")
            if not all(0.0 < a < 1.0 for a in self.alphas_cumprod):
                raise ValueError("a sampling chain's abar values must lie strictly between 0 and 1")
            object.__setattr__(self, "alphas", tuple(math.sqrt(a) for a in self.alphas_cumprod))
            object.__setattr__(self, "sigmas", tuple(math.sqrt(1.0 - a) for a in self.alphas_cumprod))
        else:
            if self.alphas is None or self.sigmas is None:
                raise ValueError("a sampling chain needs alphas_cumprod (variance preserving) or alphas and sigmas")
            if not n or not n == len(self.alphas) == len(self.sigmas):
                raise ValueError("a sampling chain needs one alpha and one sigma per level and at least one level")
            if not all(math.isfinite(a) and a >= 0.0 for a in self.alphas):
                raise ValueError(f"a sampling chain's alphas must be finite and >= 0, got {self.alphas}")
            if not all(math.isfinite(s) and s > 0.0 for s in self.sigmas):
                raise ValueError(f"a sampling chain's sigmas must be finite and > 0 (sigma = 0 is the clean "
                                 f"end, after the last level), got {self.sigmas}")
            snr = [self.log_snr(i) for i in range(n)]
            if any(a >= b for a, b in zip(snr, snr[1:])):
                raise ValueError("a sampling chain's levels must go from noisiest to cleanest (strictly "
                                 f"ascending log-SNR), got log-SNR {snr}")
        if self.space not in ("sigma", "flow"):
            raise ValueError(f"a sampling chain's space is 'sigma' or 'flow', got {self.space!r}")

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def variance_preserving(self) -> bool:
        """Whether the chain is a variance-preserving table (given by ``alphas_cumprod``)."""
        return self.alphas_cumprod is not None

    def level(self, i: int) -> Level:
        """Level ``i`` (``i < len(chain)``): its time value, alpha and sigma."""
        if self.alphas_cumprod is not None:
            return Level.variance_preserving(self.timesteps[i], self.alphas_cumprod[i])
        assert self.alphas is not None and self.sigmas is not None
        return Level(time=self.timesteps[i], alpha=self.alphas[i], sigma=self.sigmas[i])

    def abar(self, i: int) -> float:
        """``abar`` of level ``i`` of a variance-preserving chain; 1.0 at the clean end.

        Other paths have no ``abar``: a sampler written for variance-preserving chains only gets a
        clear error here instead of misreading the state."""
        if i == len(self):
            return 1.0
        if self.alphas_cumprod is None:
            raise UserError("this sampler reads abar, which only variance-preserving chains (ddpm) have; on "
                            "this schedule's path use alpha(i) and sigma(i), or a sampler that does")
        return self.alphas_cumprod[i]

    def alpha(self, i: int) -> float:
        """Signal scale of level ``i`` (1 at the clean end)."""
        if i == len(self):
            return 1.0
        if self.alphas_cumprod is not None:
            return math.sqrt(self.alphas_cumprod[i])
        assert self.alphas is not None
        return self.alphas[i]

    def sigma(self, i: int) -> float:
        """Noise scale of level ``i`` (0 at the clean end)."""
        if i == len(self):
            return 0.0
        if self.alphas_cumprod is not None:
            return math.sqrt(1.0 - self.alphas_cumprod[i])
        assert self.sigmas is not None
        return self.sigmas[i]

    def variance(self, i: int) -> float:
        """``sigma^2`` of level ``i`` (``1 - abar`` on a variance-preserving chain; 0 at the clean end)."""
        if self.alphas_cumprod is not None:
            return 1.0 - self.abar(i)
        return self.sigma(i) ** 2

    def transition(self, i: int) -> tuple[float, float]:
        """``(a, v)`` of the forward step from level ``i + 1`` to level ``i``:
        ``x_i = a x_{i+1} + sqrt(v) z``, with ``a = alpha_i / alpha_{i+1}`` and
        ``v = sigma_i^2 - a^2 sigma_{i+1}^2`` (on a variance-preserving chain ``v`` is the respaced
        step's ``beta = 1 - abar_i / abar_{i+1}`` and ``a = sqrt(1 - beta)``)."""
        if self.alphas_cumprod is not None:
            beta = 1.0 - self.abar(i) / self.abar(i + 1)
            return math.sqrt(1.0 - beta), beta
        a = self.alpha(i) / self.alpha(i + 1)
        return a, max(self.variance(i) - a * a * self.variance(i + 1), 0.0)

    def log_snr(self, i: int) -> float:
        """Half log signal-to-noise ratio ``lambda = log(alpha / sigma)`` (``inf`` at the clean end,
        ``-inf`` where ``alpha = 0``)."""
        if i == len(self):
            return math.inf
        return self.level(i).log_snr


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


class Sampler(Configurable, abc.ABC):
    """An update rule of the reverse process, run over a chain of noise levels.

    ``sample(denoise, x, chain)`` starts from the state ``x`` at level 0 of ``chain`` and returns
    the state at its clean end. ``denoise(x, i) -> (x0, eps)`` gives the model's estimates at level
    ``i`` (for epsilon, x0 and v denoisers alike); all noise comes from ``generator``; each level
    is reported once through ``callback`` (:func:`notify`). A chain that starts
    mid-way (SDEdit) is an ordinary chain whose first level is not the last training step.
    """

    kind: ClassVar[str] = "sampler"

    @property
    def spacing(self) -> str:
        """How the schedule spaces this sampler's levels: the Config's ``spacing``, else ``uniform``."""
        return str(getattr(self.config, "spacing", "uniform"))

    @abc.abstractmethod
    def sample(self, denoise: DenoiseFn, x: Tensor, chain: SamplingChain, *,
               generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Tensor:
        """Run the chain from ``x`` at level 0 to the clean end; return the sample."""

    def evaluations(self, levels: int) -> int:
        """Denoiser calls for a chain of ``levels`` levels (one per level unless overridden)."""
        return levels

    def chain(self, schedule: NoiseSchedule, steps: int | None, *, start: float | None = None) -> SamplingChain:
        """The chain this sampler runs for ``steps`` levels from time value ``start`` (default: the
        schedule's noisiest): ``schedule.chain(steps, start=start, spacing=self.spacing)``. A sampler
        with a spacing of its own overrides this and builds it with ``schedule.chain_at(times)``."""
        return schedule.chain(steps, start=start, spacing=self.spacing)

    def check(self, chain: SamplingChain) -> None:
        """Raise :class:`~vqvdm_core.errors.UserError` if this sampler cannot run on ``chain``; called
        before any denoiser call. Every built-in sampler runs on every chain except where it says."""


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device, drawn from ``generator``.

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same
    numbers whatever device the model runs on.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def sampling_chain(sampler: Sampler, schedule: NoiseSchedule, steps: int | None, *,
                   start: float | None = None) -> SamplingChain:
    """The chain ``sampler`` runs over ``schedule`` for ``steps`` levels, checked by both (a clear
    :class:`~vqvdm_core.errors.UserError` for a combination that cannot run)."""
    chain = sampler.chain(schedule, steps, start=start)
    sampler.check(chain)
    return chain


def notify(callback: StepCallback | None, chain: SamplingChain, i: int, x: Tensor, x0: Tensor) -> None:
    """Report level ``i`` to ``callback`` (if any); samplers call this once per level."""
    if callback is not None:
        callback(SamplerStep(index=i, num_steps=len(chain), timestep=chain.timesteps[i], x=x, x0=x0))


def reporting(callback: StepCallback | None,
              progress: Callable[[int, int], None] | None) -> StepCallback | None:
    """One callback that calls ``callback(step)`` and ``progress(levels done, levels)``."""
    if progress is None:
        return callback

    def report(step: SamplerStep) -> None:
        if callback is not None:
            callback(step)
        progress(step.index + 1, step.num_steps)

    return report


# --------------------------------------------------------------------------------------------
# Respacing
# --------------------------------------------------------------------------------------------


def uniform_timesteps(num_train_steps: int, steps: int | None) -> list[int]:
    """``steps`` evenly spaced indices of ``0 .. num_train_steps - 1`` inclusive, rounded, ascending
    (improved DDPM's ``space_timesteps``); ``None`` keeps all, 1 keeps the last."""
    if steps is None:
        return list(range(num_train_steps))
    if not 1 <= steps <= num_train_steps:
        raise UserError(f"sampling steps must be between 1 and {num_train_steps}, got {steps}")
    if steps == 1:
        return [num_train_steps - 1]
    stride = (num_train_steps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


def respace(alphas_cumprod: Tensor | Sequence[float], steps: int | None, *, start: int | None = None,
            spacing: str = "uniform") -> list[int]:
    """The training time steps a ``steps``-level chain visits, **descending**.

    ``alphas_cumprod`` is the schedule's full ``(T,)`` table. The first level is ``start`` (default
    ``T - 1``) and the last is 0, except for ``trailing``:

    * ``uniform``: ``steps`` evenly spaced indices of the *full* chain ``0 .. T-1``, rounded, as
      improved DDPM's ``space_timesteps`` (Nichol & Dhariwal 2021); with ``start``, the chain
      begins at ``start`` and continues along those indices below it (diffusers' image-to-image
      convention: a later start visits fewer levels);
    * ``trailing``: ``T - 1, T - 1 - T/steps, ...`` down to ``T/steps - 1`` (diffusers' "trailing"
      spacing): no call is spent at ``t = 0``, where the state is already all but clean; the last
      step jumps from ``T/steps - 1`` to the clean end; ``start`` as for ``uniform``;
    * ``karras``: noise levels ``sigma = sqrt((1 - abar) / abar)`` spaced as Karras et al. (2022,
      Eq. 5, rho = 7) between ``start`` and 0, each mapped to the nearest training step in log sigma;
    * ``log_snr``: evenly spaced in ``log(alpha / sigma)`` between ``start`` and 0 (Lu et al. 2022),
      mapped the same way.

    Nearest-step mapping can merge two levels; they are kept once, so a non-uniform chain may have
    fewer than ``steps`` levels. ``None`` keeps every step from ``start`` down.
    """
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    total = int(abar.shape[0])
    first = total - 1 if start is None else int(start)
    if not 0 <= first < total:
        raise UserError(f"the start time step must be between 0 and {total - 1}, got {start}")
    if spacing not in SPACINGS:
        raise UserError(f"unknown spacing '{spacing}'; use one of: {', '.join(SPACINGS)}")
    if steps is None:
        return list(range(first, -1, -1))
    if not 1 <= steps <= total:
        raise UserError(f"sampling steps must be between 1 and {total}, got {steps}")
    if spacing == "uniform":
        return [first] + [k for k in reversed(uniform_timesteps(total, steps)) if k < first]
    if spacing == "trailing":
        kept = sorted({round(total - i * total / steps) - 1 for i in range(steps)}, reverse=True)
        return [first] + [k for k in kept if k < first]
    if steps == 1 or first == 0:
        return [first]
    log_sigma = 0.5 * (torch.log1p(-abar) - torch.log(abar))  # log sqrt((1 - abar) / abar)
    hi, lo = float(log_sigma[first]), float(log_sigma[0])
    u = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    if spacing == "karras":
        rho = 7.0
        s_hi, s_lo = math.exp(hi) ** (1 / rho), math.exp(lo) ** (1 / rho)
        targets = torch.log((s_hi + u * (s_lo - s_hi)) ** rho)
    else:  # log_snr: lambda = -log sigma, evenly spaced
        targets = hi + u * (lo - hi)
    candidates = log_sigma[: first + 1]
    nearest = (candidates[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()
    kept = sorted(set(nearest) | {first, 0}, reverse=True)
    return kept


# --------------------------------------------------------------------------------------------
# Driving a sampler
# --------------------------------------------------------------------------------------------


SamplerLike = Any
"""A built :class:`Sampler`, a registered name, a recipe node (``name`` + options) or ``None``."""


def _name_and_options(sampler: SamplerLike, schedule: NoiseSchedule | None) -> tuple[str, dict[str, Any]]:
    """``(registered name, options)`` of a sampler given by name or node; None: the schedule's
    default. The schedule's options for that sampler (older recipes) fill what the node leaves out."""
    if sampler is None and schedule is not None:
        sampler = schedule.default_sampler()
    if hasattr(sampler, "build") and hasattr(sampler, "name"):  # a recipe node
        name, options = sampler.name, dict(sampler.options)
    elif isinstance(sampler, str):
        name, options = sampler, {}
    elif isinstance(sampler, Mapping) and "name" in sampler:
        name, options = sampler["name"], {k: v for k, v in sampler.items() if k != "name"}
    else:
        raise ComponentError(f"a sampler must be a built Sampler, a registered name or a node with a name, "
                             f"got {type(sampler).__name__}")
    inherited = schedule.sampler_defaults(name) if schedule is not None else {}
    return str(name), {**inherited, **options}


def resolve_sampler(sampler: SamplerLike, *, schedule: NoiseSchedule | None = None,
                    registry: Registry | None = None) -> Sampler:
    """A built sampler from what a caller gave.

    ``sampler`` may be a built :class:`~vqvdm_core.interfaces.Sampler`, a registered name
    (``"dpmpp_2m"``), a recipe node (a :class:`~vqvdm_core.recipe.ComponentSpec` or a mapping with
    ``name`` and options) or ``None``: then the schedule's :meth:`default_sampler` (older recipes
    named the sampler in the schedule node).
    """
    from vqvdm_core.registry import REGISTRY

    registry = registry if registry is not None else REGISTRY
    if isinstance(sampler, Sampler):
        return sampler
    if sampler is None and (schedule is None or schedule.default_sampler() is None):
        raise UserError("no sampler given and the schedule names no default: pass sampler=... (one of: "
                        f"{', '.join(registry.names('sampler')) or 'none registered'})")
    name, options = _name_and_options(sampler, schedule)
    return registry.create("sampler", name, **options)


def sampler_label(sampler: SamplerLike, *, schedule: NoiseSchedule | None = None,
                  registry: Registry | None = None) -> str:
    """A short name for what :func:`resolve_sampler` builds: ``dpmpp_2m``, ``ddim(eta=0.5)``; None
    names the schedule's default. Options at the sampler's defaults are left out."""
    from vqvdm_core.registry import REGISTRY

    if isinstance(sampler, Sampler):
        return type(sampler).__name__
    if sampler is None and (schedule is None or schedule.default_sampler() is None):
        return "none"
    name, options = _name_and_options(sampler, schedule)
    try:
        fields = (registry if registry is not None else REGISTRY).config_class("sampler", name).model_fields
        options = {k: v for k, v in options.items() if k not in fields or v != fields[k].default}
    except ComponentError:
        pass
    inner = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{name}({inner})" if inner else name


def run_sampler(
    sampler: Sampler,
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    *,
    prediction_type: PredictionType,
    shape: tuple[int, ...] | None = None,
    x: Tensor | None = None,
    steps: int | None = None,
    start_step: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
    wrap: Callable[[DenoiseFn, SamplingChain], DenoiseFn] | None = None,
) -> Tensor:
    """Run ``sampler`` over ``schedule``'s ``steps``-level chain; return the clean sample.

    Starts from ``x`` (the state at ``start_step``, e.g. a clip noised with ``schedule.add_noise``
    for SDEdit-style editing) or, without ``x``, from standard normal noise of ``shape`` drawn from
    ``generator`` at the last training step. ``model_fn(x_t, t)`` is the denoiser with its
    conditions and guidance bound; ``callback`` sees every level (:class:`SamplerStep`).
    ``wrap(denoise, chain)``, if given, returns the function the sampler calls instead of
    ``denoise`` (e.g. :func:`vqvdm_core.system.long_video.condition_on_known` to hold frames fixed).
    """
    if x is None:
        if start_step is not None:
            raise UserError("start_step needs the state at that step: pass x (e.g. schedule.add_noise(x0, "
                            "noise, t) for SDEdit)")
        if shape is None:
            raise ValueError("run_sampler needs shape or x")
        x = gaussian_like(torch.empty(shape, device=device), generator)
    chain = sampling_chain(sampler, schedule, steps, start=start_step)
    schedule.check_prediction_type(prediction_type, chain)

    def denoise(x_i: Tensor, i: int) -> tuple[Tensor, Tensor]:
        level = chain.level(i)
        t = torch.full((x_i.shape[0],), level.time, device=x_i.device, dtype=schedule.time_dtype)
        prediction = model_fn(schedule.model_input(x_i, t), t).to(x_i.dtype)
        return schedule.predict_x0_eps(prediction, x_i, level, prediction_type)

    return sampler.sample(denoise if wrap is None else wrap(denoise, chain), x, chain,
                          generator=generator, callback=callback)

"""The sampler interface: :class:`Sampler`, what it is given, and the driver that runs one.

A sampler is a small function over a *chain* of noise levels (k-diffusion's shape): it receives

* ``denoise(x, i) -> (x0, eps)``: the model's estimates of the clean sample and of the noise for the
  state ``x`` at level ``i`` of the chain (the schedule turns the denoiser's raw prediction, epsilon,
  x0 or v, into both, so every sampler works for every prediction type);
* ``x``: the state at level 0 (pure noise, or a noised clip for SDEdit-style editing);
* a :class:`SamplingChain`: the training time steps it visits, noisiest first, with their
  ``abar`` (the cumulative product of ``1 - beta``); one past the last level is the clean end.

It returns the state at the clean end and reports each level through ``callback``
(:class:`SamplerStep`: the state the model saw and its x0 estimate). The schedule keeps the forward
process and builds chains (:meth:`~vqvdm_core.interfaces.NoiseSchedule.chain`); the update rules
live in the sampler plug-ins. :func:`run_sampler` wires the three together.

All chains here are variance preserving: ``x_t = alpha_t x0 + sigma_t eps`` with
``alpha_t = sqrt(abar_t)`` and ``sigma_t = sqrt(1 - abar_t)``.
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
    "respace",
    "run_sampler",
    "uniform_timesteps",
]

Spacing = Literal["uniform", "trailing", "karras", "log_snr"]
SPACINGS: tuple[str, ...] = ("uniform", "trailing", "karras", "log_snr")
SPACING_HELP = ("how the schedule spaces the chain's levels: uniform (the paper's respacing), trailing, "
                "karras or log_snr (see vqvdm_core.interfaces.sampler.respace)")
"""The description of a sampler Config's ``spacing`` field."""

class SamplerConfig(ComponentConfig):
    """Base of a sampler plug-in's ``Config``: the ``spacing`` every sampler takes (subclasses add
    their own options, or change the default with ``spacing: Spacing = Field("karras", ...)``)."""

    spacing: Spacing = Field("uniform", description=SPACING_HELP)


DenoiseFn = Callable[[Tensor, int], tuple[Tensor, Tensor]]
"""``denoise(x, i) -> (x0, eps)``: the model's estimates for state ``x`` at chain level ``i``."""


@dataclass(frozen=True)
class SamplerStep:
    """One level of a sampling chain, as reported to a callback."""

    index: int
    """Position in the chain, 0 = the noisiest level."""
    num_steps: int
    """Levels in the chain (denoiser calls of a one-call-per-level sampler)."""
    timestep: int
    """The training time step the denoiser saw."""
    x: Tensor
    """The state at this level (what the denoiser saw)."""
    x0: Tensor
    """The denoiser's estimate of the clean sample from ``x``."""


StepCallback = Callable[[SamplerStep], None]


@dataclass(frozen=True)
class SamplingChain:
    """The noise levels a sampler visits, noisiest first; one past the last is the clean end.

    ``timesteps[i]`` is the training time step of level ``i`` (strictly descending) and
    ``alphas_cumprod[i]`` its ``abar`` (float64 Python floats, strictly ascending). Level
    ``len(chain)`` has ``abar = 1``: ``alpha = 1``, ``sigma = 0``, ``log_snr = inf``.
    """

    timesteps: tuple[int, ...]
    alphas_cumprod: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.timesteps or len(self.timesteps) != len(self.alphas_cumprod):
            raise ValueError("a sampling chain needs one abar per time step and at least one step")
        if any(a <= b for a, b in zip(self.timesteps, self.timesteps[1:])):
            raise ValueError(f"a sampling chain's time steps must strictly descend, got {self.timesteps}")
        if not all(0.0 < a < 1.0 for a in self.alphas_cumprod):
            raise ValueError("a sampling chain's abar values must lie strictly between 0 and 1")

    def __len__(self) -> int:
        return len(self.timesteps)

    def abar(self, i: int) -> float:
        """``abar`` of level ``i``; 1.0 at the clean end (``i == len(chain)``)."""
        return 1.0 if i == len(self) else self.alphas_cumprod[i]

    def alpha(self, i: int) -> float:
        """Signal scale ``sqrt(abar)`` of level ``i``."""
        return math.sqrt(self.abar(i))

    def sigma(self, i: int) -> float:
        """Noise scale ``sqrt(1 - abar)`` of level ``i`` (0 at the clean end)."""
        return math.sqrt(1.0 - self.abar(i))

    def log_snr(self, i: int) -> float:
        """Half log signal-to-noise ratio ``lambda = log(alpha / sigma)`` (``inf`` at the clean end)."""
        if i == len(self):
            return math.inf
        a = self.alphas_cumprod[i]
        return 0.5 * (math.log(a) - math.log1p(-a))


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


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device, drawn from ``generator``.

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same
    numbers whatever device the model runs on.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


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
    start_step: int | None = None,
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
    chain = schedule.chain(steps, start=start_step, spacing=sampler.spacing)

    def denoise(x_i: Tensor, i: int) -> tuple[Tensor, Tensor]:
        t = torch.full((x_i.shape[0],), chain.timesteps[i], device=x_i.device, dtype=torch.long)
        prediction = model_fn(x_i, t).to(x_i.dtype)
        return schedule.predict_x0_eps(prediction, x_i, chain.alphas_cumprod[i], prediction_type)

    return sampler.sample(denoise if wrap is None else wrap(denoise, chain), x, chain,
                          generator=generator, callback=callback)

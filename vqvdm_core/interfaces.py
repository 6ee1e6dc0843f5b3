"""The typed interfaces every component implements.

Conventions used throughout:

* Video tensors are ``(B, C, T, H, W)`` float tensors with pixel values in ``[-1, 1]``.
* Latents are ``(B, c, t, h, w)``; for the paper's 3D VQGAN a ``3x16x128x128`` clip becomes ``4x4x16x16``.
* Embeddings are ``(B, D)`` where ``D`` is the denoiser's ``emb_dim``.
* A batch is a mapping with at least ``"video"`` (B, C, T, H, W), ``"fps"`` (B,) float and
  ``"label"`` (B,) long, where ``-1`` means "no label", plus any other ``(B,)`` field a
  conditioner reads (``"motion"``...): conditions are a mapping of field to values.

Each interface is an abstract class; a plug-in subclasses it and adds a nested ``Config``
(see :mod:`vqvdm_core.config`). The registry refuses a class that does not subclass its kind's
interface or leaves an abstract method unimplemented.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from vqvdm_core.config import ComponentConfig, Configurable
from vqvdm_core.sampling import DenoiseFn, SamplingChain, StepCallback, respace

__all__ = [
    "NO_LABEL",
    "PredictionType",
    "TrainStep",
    "Trainable",
    "VideoTokenizer",
    "Denoiser",
    "NoiseSchedule",
    "Conditioner",
    "Guidance",
    "Metric",
    "Sampler",
    "VideoDataset",
    "ExperimentLogger",
    "RunInfo",
    "accepts_conditions",
    "update_metric",
    "ModelFn",
]

NO_LABEL = -1
"""Label value of a clip that has no class (unlabelled data, or the unconditional branch)."""

PredictionType = Literal["epsilon", "x0", "v"]

ModelFn = Callable[[Tensor, Tensor], Tensor]
"""``model_fn(x_t, t) -> prediction``: the denoiser with its conditioning and guidance bound."""


@dataclass
class TrainStep:
    """What one training step of a trainable component returns.

    ``losses`` maps optimizer group name to the scalar that group's optimizer minimises, in the
    order the engine steps them (a GAN returns ``{"generator": ..., "discriminator": ...}``).
    ``logs`` holds detached scalars to record (each loss term, codebook usage, ...).
    """

    losses: dict[str, Tensor]
    logs: dict[str, float] = field(default_factory=dict)


class Trainable(abc.ABC):
    """Something the training engine can optimise: named parameter groups and a step function."""

    @abc.abstractmethod
    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer, e.g. ``{"generator": [...], "discriminator": [...]}``."""

    @abc.abstractmethod
    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        """Compute every loss of one step for ``batch``; ``step`` is the global optimizer step."""


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


class VideoTokenizer(Configurable, nn.Module, Trainable):
    """Maps video to a compact latent and back.

    ``encode``: ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, c, T/ft, H/fs, W/fs)``.
    ``decode``: any latent of that shape (a diffusion sample need not lie on a codebook) -> video.
    """

    kind: ClassVar[str] = "tokenizer"

    pixel_space: ClassVar[bool] = False
    """True for a tokenizer whose latent is the video itself (no compression): ``vqvdm bench``
    builds the pixel-space twin of a recipe with the registered tokenizer that says so."""

    @property
    @abc.abstractmethod
    def latent_channels(self) -> int:
        """Channels ``c`` of the latent."""

    @abc.abstractmethod
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of the latent of a ``frames x height x width`` clip."""

    @abc.abstractmethod
    def encode(self, video: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, c, t, h, w)`` (quantized, for a VQ tokenizer)."""

    @abc.abstractmethod
    def decode(self, latent: Tensor) -> Tensor:
        """``(B, c, t, h, w)`` -> ``(B, 3, T, H, W)`` in roughly [-1, 1]."""

    @property
    def trainable(self) -> bool:
        """False for tokenizers with nothing to learn (``identity``): the tokenizer stage is skipped."""
        return any(p.requires_grad for p in self.parameters())

    def inference_config(self) -> ComponentConfig:
        """This tokenizer's config with what only training uses switched off (loss networks, a
        discriminator), encoding and decoding unchanged. An exported pipeline
        (:mod:`vqvdm_core.pretrained`) stores the tokenizer with this config and only the weights a
        tokenizer built from it has, so it carries no training-only weights. Default: the config as is."""
        return self.config

    @property
    def decode_context(self) -> int | None:
        """Latent frames on each side that a decoded frame depends on, or None when unbounded/unknown.

        With a number ``r``, a long latent may be decoded in temporal chunks, each widened by ``r``
        latent frames on both sides and cropped, and give the same video as one whole decode (the
        memory of a long video's decode stays that of one chunk). None (the default: e.g. a decoder
        with GroupNorm, whose statistics span every frame) means only a whole decode is exact.
        """
        return None


# --------------------------------------------------------------------------------------------
# Denoiser
# --------------------------------------------------------------------------------------------


class Denoiser(Configurable, nn.Module, abc.ABC):
    """The network of the reverse process.

    ``forward(x_t, t, emb)``: ``x_t`` ``(B, c, t, h, w)``, ``t`` ``(B,)`` integer time steps,
    ``emb`` ``(B, emb_dim)`` summed condition embeddings or ``None`` -> prediction of ``x_t``'s shape.
    The denoiser owns the time-step embedding; condition embeddings are added to it.

    A denoiser with :attr:`known_frames_rate` > 0 also takes ``known`` ``(B, c + 1, t, h, w)``: the
    clean latent of the frames that are given (zero elsewhere) and, as the last channel, a mask that
    is 1 on those frames (frame conditioning, as FDM and MCVD train it). Training gives such a
    denoiser a known prefix at that rate; long videos and continuations pass the known frames.
    """

    kind: ClassVar[str] = "denoiser"

    @property
    @abc.abstractmethod
    def prediction_type(self) -> PredictionType:
        """What the network predicts: ``"epsilon"`` (the paper), ``"x0"`` or ``"v"``."""

    @property
    @abc.abstractmethod
    def emb_dim(self) -> int:
        """Width ``D`` of the conditioning embedding ``forward`` accepts."""

    @property
    def known_frames_rate(self) -> float:
        """Fraction of training clips given a clean prefix of known latent frames (``forward(...,
        known=...)``); 0, the default: the denoiser takes no known frames."""
        return 0.0

    @abc.abstractmethod
    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        """Predict for ``x_t`` at time steps ``t`` given condition embedding ``emb``."""


# --------------------------------------------------------------------------------------------
# Noise schedule
# --------------------------------------------------------------------------------------------


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
        :func:`vqvdm_core.sampling.respace`).
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

        A convenience over :func:`vqvdm_core.sampling.run_sampler`: ``sampler`` is a built
        :class:`Sampler`, a registered name or ``None`` (:meth:`default_sampler`); ``steps``
        respaces the chain; ``progress(i, n)`` is called after each level.
        """
        from vqvdm_core.sampling import reporting, resolve_sampler, run_sampler

        return run_sampler(resolve_sampler(sampler, schedule=self), model_fn, self,
                           prediction_type=prediction_type, shape=shape, steps=steps, generator=generator,
                           device=device, callback=reporting(callback, progress))


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


class Sampler(Configurable, abc.ABC):
    """An update rule of the reverse process, run over a chain of noise levels.

    ``sample(denoise, x, chain)`` starts from the state ``x`` at level 0 of ``chain`` and returns
    the state at its clean end. ``denoise(x, i) -> (x0, eps)`` gives the model's estimates at level
    ``i`` (for epsilon, x0 and v denoisers alike); all noise comes from ``generator``; each level
    is reported once through ``callback`` (:func:`vqvdm_core.sampling.notify`). A chain that starts
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


# --------------------------------------------------------------------------------------------
# Conditioner
# --------------------------------------------------------------------------------------------


class Conditioner(Configurable, nn.Module, abc.ABC):
    """Turns one batch field into an embedding that is added to the time-step embedding.

    A conditioner owns its null value and the condition dropout of joint cond/uncond training.
    ``guided`` conditioners are the ``c`` that classifier-free guidance removes in the
    unconditional branch (the class); the others (FPS) stay in both branches (paper Eq. 7).
    """

    kind: ClassVar[str] = "conditioner"

    field: ClassVar[str]
    """The batch key this conditioner reads, e.g. ``"fps"``, ``"label"`` or a plug-in's own
    (``"motion"``): the data set provides it per clip, the latent cache and samples file keep it, and
    ``system.sample(conditions={field: ...})`` and metrics (``conditions``) take it by this name."""

    @property
    @abc.abstractmethod
    def guided(self) -> bool:
        """True if classifier-free guidance drops this condition in the unconditional branch."""

    @property
    @abc.abstractmethod
    def dropout(self) -> float:
        """Probability ``rho`` that one training example's condition is replaced by the null value."""

    @abc.abstractmethod
    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        """The null condition for ``batch_size`` examples (e.g. the null class index)."""

    @abc.abstractmethod
    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` field values -> ``(B, emb_dim)`` embedding."""

    def default(self, batch_size: int, *, device: torch.device | str) -> Tensor | None:
        """Values to use when the caller gives none at sampling time (None: the caller must give them)."""
        return None

    def drop(self, values: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Replace each value by the null value with probability ``dropout`` (training only)."""
        if self.dropout <= 0.0:
            return values
        draw_device = generator.device if generator is not None else values.device
        keep = torch.rand(values.shape[0], generator=generator, device=draw_device).to(values.device)
        keep = keep >= self.dropout
        null = self.null(values.shape[0], device=values.device).to(values.dtype)
        return torch.where(keep, values, null)


# --------------------------------------------------------------------------------------------
# Guidance
# --------------------------------------------------------------------------------------------


class Guidance(Configurable, abc.ABC):
    """Combines conditional and unconditional predictions at sampling time."""

    kind: ClassVar[str] = "guidance"

    @property
    @abc.abstractmethod
    def scale(self) -> float:
        """The configured guidance scale ``w`` (used when the caller passes none)."""

    @abc.abstractmethod
    def predict(self, denoiser: Denoiser, x_t: Tensor, t: Tensor, *, cond: Tensor | None,
                uncond: Tensor | None, scale: float | None = None) -> Tensor:
        """The guided prediction for ``x_t``; ``cond``/``uncond`` are ``(B, D)`` embeddings or None."""


# --------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------


class Metric(Configurable, abc.ABC):
    """An accumulating evaluation metric.

    ``update`` takes batches of real and/or generated video ``(B, 3, T, H, W)`` in [-1, 1]
    and, for conditional metrics, the conditions the generated clips were asked for: always as
    ``labels`` and ``fps`` (``None`` when not conditioned on), and, to a metric whose ``update``
    declares a ``conditions`` keyword (or ``**kwargs``), also as ``conditions``, a mapping of every
    conditioner field to its ``(B,)`` values (``{"label": ..., "fps": ..., "motion": ...}``). The
    stages call :func:`update_metric`, which does this, so metrics written for ``labels``/``fps``
    keep working unchanged.
    """

    kind: ClassVar[str] = "metric"

    requires_real: ClassVar[bool] = True
    """Whether ``compute`` needs real clips (FVD, KVD) or only generated ones (IS, probes)."""

    @abc.abstractmethod
    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """Values from everything accumulated since the last ``reset``."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    def set_reference(self, identity: str) -> Any:
        """Name the real set the next real clips come from (e.g. a hash of its recipe node), so a
        metric may cache real-set statistics across runs. Metrics without such a cache ignore it."""
        return None

    @property
    def needs_real(self) -> bool:
        """Whether ``update`` still wants real clips (False once cached real statistics are loaded)."""
        return self.requires_real

    def to(self, device: torch.device | str) -> "Metric":  # noqa: D401 - mirrors nn.Module.to
        """Move feature networks to ``device``; metrics without networks ignore it."""
        return self

    def protocol(self) -> dict[str, Any]:
        """The settings that change the number; written next to it in ``metrics.json``."""
        return self.config.model_dump()


def accepts_conditions(metric: Metric) -> bool:
    """Whether ``metric.update`` takes a ``conditions`` keyword (declared, or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(metric.update).parameters
    except (TypeError, ValueError):
        return False
    return "conditions" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def update_metric(metric: Metric, *, real: Tensor | None = None, fake: Tensor | None = None,
                  conditions: Mapping[str, Tensor] | None = None) -> None:
    """``metric.update`` with the generated clips' ``conditions`` (field -> ``(B,)`` values): as
    ``labels``/``fps`` always, and as ``conditions`` too when the metric accepts it (see :class:`Metric`)."""
    kwargs: dict[str, Any] = {"real": real, "fake": fake}
    if fake is not None and conditions is not None:
        given = dict(conditions)
        kwargs["labels"], kwargs["fps"] = given.get("label"), given.get("fps")
        if accepts_conditions(metric):
            kwargs["conditions"] = given
    metric.update(**kwargs)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class VideoDataset(Configurable, torch.utils.data.Dataset, abc.ABC):
    """A map-style dataset of clips.

    ``dataset[i]`` is ``{"video": (3, T, H, W) float in [-1, 1], "fps": float, "label": int}``
    with ``label == NO_LABEL`` for unlabelled data, plus any other per-clip number a conditioner
    reads (``"motion": float``...): the latent cache keeps every such field.
    """

    kind: ClassVar[str] = "dataset"

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @property
    @abc.abstractmethod
    def clip_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of every clip this dataset yields."""

    @classmethod
    def clip_shape_of(cls, config: Any) -> tuple[int, int, int] | None:
        """:attr:`clip_shape` of a dataset built from ``config``, told from the config alone (no
        file opened), or None (the default) when only a built dataset can tell: callers such as
        ``vqvdm bench`` then build it."""
        return None

    @classmethod
    def num_classes_of(cls, config: Any) -> int | None:
        """:attr:`num_classes` of a dataset built from ``config``, from the config alone, or None
        (the default) when only a built dataset (e.g. one reading split files) can tell."""
        return None

    @property
    def class_names(self) -> list[str] | None:
        """Class names by index, or None for unlabelled data."""
        return None

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out because they were corrupt, unreadable or too short: path -> reason."""
        return {}

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabelled data)."""
        names = self.class_names
        return len(names) if names else 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]


# --------------------------------------------------------------------------------------------
# Experiment logger
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The run an :class:`ExperimentLogger` records: its name, its directory and its settings."""

    name: str
    """The recipe's run name."""
    directory: Path
    """The run directory (``runs/<name>/``); a logger that writes files puts them under it by default."""
    config: dict[str, Any]
    """The resolved recipe (every default filled, JSON-safe): the run's config / hyper-parameters."""


class ExperimentLogger(Configurable, abc.ABC):
    """A sink for what a run measures: an experiment tracker (TensorBoard, W&B, MLflow) or a file.

    Every scalar a stage records (each ``metrics.jsonl`` record of the training stages, the
    evaluate stage's metrics) reaches :meth:`log_scalars`, tagged with the stage it comes from;
    validation and sample videos reach :meth:`log_video`. Only the main process (rank 0) logs.
    :meth:`open` is called once before the first value and :meth:`close` once at the end of the
    command, also when it fails.
    """

    kind: ClassVar[str] = "logger"

    @abc.abstractmethod
    def open(self, run: RunInfo) -> None:
        """Start recording ``run``; record ``run.config`` as the run's config (hyper-parameters).

        Import an optional dependency here (or at module level) and raise an error naming the
        package to install when it is missing."""

    @abc.abstractmethod
    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        """Record ``values`` (``{"loss/generator": 0.12, "val/mse": 0.03}``) at ``step`` of ``stage``
        (``tokenizer``, ``denoiser``, ``evaluate``...). Steps count from each stage's start."""

    def log_video(self, name: str, path: Path, *, step: int, stage: str, fps: float) -> None:
        """Record the video file ``path`` (``.gif`` or ``.mp4``) as ``name`` at ``step`` of ``stage``.
        The default ignores it (a sink without videos)."""
        return None

    def close(self, *, failed: bool = False) -> None:
        """Flush and release everything; ``failed`` when the command stopped on an error."""
        return None


INTERFACES: dict[str, type] = {
    "tokenizer": VideoTokenizer,
    "denoiser": Denoiser,
    "schedule": NoiseSchedule,
    "sampler": Sampler,
    "conditioner": Conditioner,
    "guidance": Guidance,
    "metric": Metric,
    "dataset": VideoDataset,
    "logger": ExperimentLogger,
}
"""Kind name -> the interface its components must implement."""


def iter_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """All trainable parameters of ``modules``, each once, in order."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out

"""Recipe schema: the pydantic models of a recipe file (phase one of its validation).

A component node is ``{name: <registered name>, <its Config fields>...}``: :class:`ComponentSpec`
keeps the fields as ``options`` until phase two (:mod:`vqvdm_core.recipe.loading`) validates them
against the registered component's ``Config``. :data:`COMPONENT_SLOTS` says where a recipe holds
component nodes. Loading is in :mod:`vqvdm_core.recipe.loading`, ``--set`` overrides in
:mod:`vqvdm_core.recipe.overrides`, hashing in :mod:`vqvdm_core.recipe.hashing`; :mod:`vqvdm_core.recipe`
re-exports all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PrivateAttr, field_validator, model_validator

from vqvdm_core.registry import REGISTRY, Registry

STAGES: tuple[str, ...] = ("tokenizer", "latents", "denoiser", "sample", "evaluate")
StageName = Literal["tokenizer", "latents", "denoiser", "sample", "evaluate"]
Precision = Literal["fp32", "bf16", "fp16"]


class Strict(BaseModel):
    """A recipe section: unknown fields and non-finite numbers (``nan``, ``inf``) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# Component nodes
# --------------------------------------------------------------------------------------------


class ComponentSpec(Strict):
    """A component node: its registered ``name`` and the fields of its ``Config``.

    In YAML it is written flat, ``{name: unet3d, channels: 64}``, or as a bare name ``ddpm``.
    After :func:`load_recipe`, ``config`` holds the validated ``Config`` (defaults filled).
    """

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    _config: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, dict) and "options" not in data:
            rest = {k: v for k, v in data.items() if k != "name"}
            # Leave a missing name missing, so that it is reported as "required field is missing".
            return {**({"name": data["name"]} if "name" in data else {}), "options": rest}
        return data

    @property
    def config(self) -> Any:
        if self._config is None:
            raise RuntimeError(f"component '{self.name}' has not been resolved (use load_recipe)")
        return self._config

    def resolve(self, kind: str, registry: Registry = REGISTRY) -> Any:
        cls = registry.load(kind, self.name)
        self._config = cls.Config.model_validate(self.options)
        return self._config

    def build(self, kind: str, registry: Registry = REGISTRY, **wired: Any) -> Any:
        """Build the component; ``wired`` fills fields the system derives (``in_channels``...)
        where the recipe left them unset."""
        cls = registry.load(kind, self.name)
        config = self._config if self._config is not None else cls.Config.model_validate(self.options)
        updates = {k: v for k, v in wired.items() if k in type(config).model_fields
                   and getattr(config, k) is None}
        if updates:
            config = type(config)(**{**config.model_dump(), **updates})
        return cls(config)

    def dump(self) -> dict[str, Any]:
        """The flat node with every field, defaults included (as written beside a run)."""
        fields = self._config.model_dump(mode="json") if self._config is not None else self.options
        return {"name": self.name, **fields}


class SamplerSpec(ComponentSpec):
    """A sampler node (``{name: dpmpp_2m, spacing: log_snr}``, or a bare name ``ddim``).

    Before samplers were plug-ins these settings held a plain name; a node with every option at
    its default hashes as that bare name, so run directories made then keep their stage hashes.
    """


# --------------------------------------------------------------------------------------------
# Stage settings
# --------------------------------------------------------------------------------------------


class OptimizerSettings(Strict):
    """An Adam-family optimizer."""

    name: Literal["adamw", "adam"] = Field("adamw", description="adamw: decoupled weight decay; adam: L2 "
                                           "weight decay added to the gradient")
    lr: float = Field(1e-4, gt=0, description="peak learning rate (after warm-up)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's moment decays (beta1, beta2)")
    weight_decay: float = Field(0.0, ge=0)
    eps: float = Field(1e-8, gt=0, description="Adam's denominator epsilon")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    decay: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="after warm-up: keep lr (constant), or decay it along a half cosine "
        "(cosine) or a straight line (linear) to min_lr_ratio * lr at the stage's last step")
    decay_steps: int | None = Field(
        None, ge=1, description="decay over the stage's last decay_steps steps only, at lr until then "
        "(warm-up, stable, decay); null: decay from the end of warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr / lr of the decay")


class TrainSettings(Strict):
    """Settings of one training stage (``train.tokenizer`` or ``train.denoiser``)."""

    steps: int = Field(1000, ge=0, description="optimizer steps")
    batch_size: int = Field(8, ge=1, description="global batch per optimizer step, before accumulation")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    shards: int | None = Field(
        None, ge=1, description="compute each micro-batch as this many equal shards, one after another, "
        "and add their results in shard order: the run is then the same bit for bit on any number of "
        "processes dividing it (docs/engine.md); null: one shard per process")
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    param_groups: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per optimizer group overrides of `optimizer`, e.g. {discriminator: {lr: 1e-4}}",
    )
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null disables")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of weights; null disables")
    precision: Precision = Field("fp32", description="autocast precision of training (fp16: CUDA only)")
    compile: bool = Field(False, description="torch.compile the trained modules")
    check_finite: Literal["step", "log"] | None = Field(
        None, description="when losses and gradient norms are checked for NaN/inf: every step (a bad step is "
        "never applied; reads each loss on the host), or at log steps, checkpoints and validations (no host "
        "synchronisation per step, the GPU runs ahead; a bad step is found within log_every steps and no "
        "checkpoint holds it); null: step on the CPU (free there), log on a GPU. Sharded steps check every step")
    log_every: int = Field(10, ge=1, description="steps between log lines and metrics.jsonl records")
    val_every: int = Field(500, ge=1, description="steps between validations (and after the last step)")
    ckpt_every: int = Field(500, ge=1, description="steps between checkpoints (and after the last step)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    val_clips: int = Field(8, ge=0, description="held-out clips used at each validation")
    val_metrics: list[ComponentSpec] = Field(
        default_factory=list, description="metrics computed at each validation (e.g. reconstruction)"
    )

    @model_validator(mode="after")
    def _groups(self) -> "TrainSettings":
        for group, fields in self.param_groups.items():
            OptimizerSettings(**{**self.optimizer.model_dump(), **fields})
        if self.shards is not None and self.batch_size % self.shards:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by shards {self.shards}")
        return self

    def optimizer_for(self, group: str) -> OptimizerSettings:
        return OptimizerSettings(**{**self.optimizer.model_dump(), **self.param_groups.get(group, {})})


class StageTraining(Strict):
    """Settings of the two training stages."""

    tokenizer: TrainSettings = Field(default_factory=TrainSettings)
    denoiser: TrainSettings = Field(default_factory=TrainSettings)


class DataSettings(Strict):
    """Training clips, and the held-out clips used for validation and as the real set of metrics."""

    train: ComponentSpec = Field(description="the training clips")
    val: ComponentSpec | None = Field(None, description="held-out clips; null: validate and evaluate "
                                      "against the training clips")


class LatentSettings(Strict):
    """The ``latents`` stage: encode the training set once with the frozen tokenizer."""

    batch_size: int = Field(8, ge=1, description="clips per encoder forward")
    epochs: int = Field(1, ge=1, description="passes over the data set (random clips differ per pass)")
    scale: float | Literal["auto"] = Field(
        "auto", description="latent scaling; 'auto' normalises latents to unit variance"
    )
    precision: Precision = Field("fp32", description="autocast precision of encoding")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")


class SampleSettings(Strict):
    """The ``sample`` stage: a grid of clips for the requested conditions."""

    labels: list[int] | Literal["all"] | None = Field(
        "all", description="class indices to generate; 'all' = every class; null = unconditional"
    )
    fps: list[PositiveFloat] | None = Field(None, description="FPS values to generate; null = the data's FPS")
    per_condition: int = Field(1, ge=1, description="clips per (label, fps) pair")
    steps: int | None = Field(100, ge=1, description="sampling steps (respaced); null = all")
    sampler: SamplerSpec | None = Field(
        None, description="sampler node, e.g. dpmpp_2m or {name: ddim, eta: 0.5}; null = the schedule's default")
    guidance_scale: float | None = Field(None, description="null = the guidance component's scale")
    batch_size: int = Field(8, ge=1, description="clips generated per forward")
    formats: list[Literal["mp4", "gif"]] = Field(default_factory=lambda: ["mp4", "gif"],
                                                 description="files written for the grid")
    precision: Precision = Field("fp32", description="autocast precision of sampling")
    known_guidance: float = Field(
        1.0, ge=0, description="guidance scale on the known frames of continuations and long videos "
        "(`vqvdm sample --context/--frames`; history guidance), for a denoiser trained with known_frames; "
        "1 = off")


class EvaluateSettings(Strict):
    """The ``evaluate`` stage: generate ``num_samples`` clips and score them."""

    metrics: list[ComponentSpec] = Field(default_factory=list, description="the metrics to compute")
    num_samples: int = Field(2048, ge=1, description="clips generated per guidance scale; also the "
                             "most real clips fed")
    batch_size: int = Field(8, ge=1, description="clips generated per forward")
    steps: int | None = Field(100, ge=1, description="sampling steps (respaced); null = all")
    sampler: SamplerSpec | None = Field(
        None, description="sampler node, e.g. dpmpp_2m or {name: ddim, eta: 0.5}; null = the schedule's default")
    guidance_scales: list[float] | None = Field(
        None, description="evaluate at each of these guidance scales; null = the guidance's scale"
    )
    real: Literal["val", "train"] = Field("val", description="which clips form the real set")
    precision: Precision = Field("fp32", description="autocast precision of sampling")


class RuntimeSettings(Strict):
    """Process-wide torch settings of a run on a GPU (``vqvdm_core.runtime.backend_policy``); the CPU's
    arithmetic does not depend on them. Not part of any stage's hash."""

    tf32: bool = Field(True, description="fp32 matmuls and convolutions on CUDA's TF32 tensor cores (Ampere "
                       "and later; 10-bit mantissa products): several times faster, about 1e-3 relative error")
    cudnn_benchmark: bool = Field(True, description="let cuDNN time its convolution algorithms per input shape "
                                  "and keep the fastest (off when deterministic)")
    deterministic: bool = Field(False, description="deterministic kernels only (torch.use_deterministic_algorithms, "
                                "CUBLAS_WORKSPACE_CONFIG): the same bits every run on a GPU, as shards need for 1 "
                                "vs N processes; an operation without such a kernel raises, naming itself")


COMPONENT_SLOTS: tuple[tuple[str, str, bool], ...] = (
    ("data.train", "dataset", False),
    ("data.val", "dataset", False),
    ("tokenizer", "tokenizer", False),
    ("denoiser", "denoiser", False),
    ("schedule", "schedule", False),
    ("sample.sampler", "sampler", False),
    ("evaluate.sampler", "sampler", False),
    ("conditioners", "conditioner", True),
    ("guidance", "guidance", False),
    ("train.tokenizer.val_metrics", "metric", True),
    ("train.denoiser.val_metrics", "metric", True),
    ("evaluate.metrics", "metric", True),
    ("loggers", "logger", True),
)
"""Where a recipe holds component nodes: ``(path, kind, is a list of nodes)``."""


RUN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""The characters of a run name: no separator, NUL or space, so the name is one folder on every system."""


def check_run_name(name: str) -> str:
    """``name`` when it is one plain folder name; else ``ValueError`` saying why (a recipe error at ``name``)."""
    if name in ("", ".", ".."):
        shown = "empty" if not name else f"'{name}', which names {'the output folder itself' if name == '.' else 'its parent'}"
        raise ValueError(f"the run name is {shown}: give a plain folder name, e.g. 'quickstart'")
    if not RUN_NAME.match(name):
        kind = ("a path" if any(c in name for c in "/\\") or re.match(r"^[A-Za-z]:", name)
                else "not a plain folder name")
        raise ValueError(f"the run name {name!r} is {kind}: the run folder is <output_dir>/<name>, so the name may "
                         "hold only letters, digits, '_', '.' and '-' (no '/', '\\', NUL or spaces); put the "
                         "folder elsewhere with output_dir")
    return name


class Recipe(Strict):
    """A runnable system: data, components, and the settings of every stage."""

    name: str = Field(description="run name: outputs go to <output_dir>/<name>/; one plain folder name "
                      "(letters, digits, _ . -; not . or ..)")
    seed: int = Field(0, description="seeds training, clip choice and sampling")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    output_dir: str = Field("runs", description="folder holding the run directories")
    stages: list[StageName] = Field(default_factory=lambda: list(STAGES),
                                    description="stages `vqvdm run` runs, in pipeline order")
    data: DataSettings = Field(description="training and held-out clips")
    tokenizer: ComponentSpec = Field(description="video <-> latent (the paper: vqgan3d)")
    denoiser: ComponentSpec = Field(description="the diffusion network (the paper: unet3d)")
    schedule: ComponentSpec = Field(description="noise schedule: forward process and respacing (the paper: ddpm)")
    conditioners: list[ComponentSpec] = Field(
        default_factory=list, description="embeddings added to the time embedding (the paper: fps, class)")
    guidance: ComponentSpec | None = Field(
        None, description="how conditional and unconditional predictions combine; null = no guidance "
        "(the denoiser's conditional prediction as is)")
    train: StageTraining = Field(default_factory=StageTraining, description="the two training stages")
    latents: LatentSettings = Field(default_factory=LatentSettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings,
                                     description="TF32, cuDNN autotuning and deterministic kernels on a GPU")
    loggers: list[ComponentSpec] = Field(
        default_factory=list, description="experiment trackers that also receive every logged scalar, the "
        "validation and sample videos and this recipe, e.g. [tensorboard] or [csv, {name: wandb, project: "
        "x}]; metrics.jsonl is always written. Not part of any stage's hash")

    _source: str | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        """The run folder is ``<output_dir>/<name>``: a name that is a path (``..``, ``a/b``, ``/tmp/x``)
        would put it somewhere else, e.g. ``..`` in the output folder's parent, over a user's files."""
        return check_run_name(name)

    @property
    def source(self) -> str | None:
        """The file this recipe was read from."""
        return self._source

    def components(self) -> Iterator[tuple[str, str, ComponentSpec]]:
        """Every component node as ``(recipe path, kind, spec)``."""
        for slot, kind, many in COMPONENT_SLOTS:
            value: Any = self
            for part in slot.split("."):
                value = getattr(value, part)
            if value is None:
                continue
            if many:
                for i, spec in enumerate(value):
                    yield f"{slot}.{i}", kind, spec
            else:
                yield slot, kind, value

    def dump(self) -> dict[str, Any]:
        """The resolved recipe: every field, component defaults filled, JSON-safe."""
        out = self.model_dump(mode="json")
        for path, _kind, spec in self.components():
            _set_path(out, path.split("."), spec.dump())
        return out

    def hash(self, *paths: str) -> str:
        """A stable hash of the recipe parts at ``paths`` (all of it when none), as they resolve.

        Only fields whose value differs from their default enter the hash (component names always
        do). Spelling a default out changes nothing, and neither does a later version of the
        library adding a field with a default: a run directory's stage records (which hold this
        hash) stay valid across such upgrades. A changed *default value* is not seen either, just
        as a changed implementation is not.

        A path that names no part of a recipe (a typo) raises ``KeyError``: it would otherwise
        hash as "absent" and never change.
        """
        from vqvdm_core.recipe.hashing import recipe_hash

        return recipe_hash(self, *paths)


_NO_DEFAULT = object()


def _get_path(data: Any, parts: list[str], *, missing: Any = _NO_DEFAULT) -> Any:
    """The value at ``parts``; ``KeyError`` naming the path when the recipe has no such part
    (or ``missing``, when given)."""
    for depth, part in enumerate(parts):
        try:
            if isinstance(data, list):
                data = data[int(part)]
            elif isinstance(data, dict):
                data = data[part]
            else:
                raise KeyError(part)
        except (KeyError, IndexError, ValueError):
            if missing is not _NO_DEFAULT:
                return missing
            raise KeyError(f"the recipe has no part '{'.'.join(parts[: depth + 1])}'") from None
    return data


def _set_path(data: Any, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        data = data[int(part)] if isinstance(data, list) else data[part]
    last = parts[-1]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value

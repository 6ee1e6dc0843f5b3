"""Recipe files: YAML validated by pydantic, in two phases.

Phase one validates the recipe's own structure (run name, seed, stages, training settings...). A
component node is ``{name: <registered name>, <its Config fields>...}``; phase two looks each name
up in the registry and validates the remaining fields against that component's ``Config``, so the
set of components stays open. Every problem is collected with its recipe path
(``denoiser.attention_heads``) and, where the YAML gives it, its line.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PrivateAttr, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from vqvdm_core.errors import ComponentError, RecipeError
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
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    param_groups: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per optimizer group overrides of `optimizer`, e.g. {discriminator: {lr: 1e-4}}",
    )
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null disables")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of weights; null disables")
    precision: Precision = Field("fp32", description="autocast precision of training (fp16: CUDA only)")
    compile: bool = Field(False, description="torch.compile the trained modules")
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


class Recipe(Strict):
    """A runnable system: data, components, and the settings of every stage."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="run name: outputs go to <output_dir>/<name>/")
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
    guidance: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="none"),
                                    description="how conditional and unconditional predictions combine")
    train: StageTraining = Field(default_factory=StageTraining, description="the two training stages")
    latents: LatentSettings = Field(default_factory=LatentSettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    loggers: list[ComponentSpec] = Field(
        default_factory=list, description="experiment trackers that also receive every logged scalar, the "
        "validation and sample videos and this recipe, e.g. [tensorboard] or [csv, {name: wandb, project: "
        "x}]; metrics.jsonl is always written. Not part of any stage's hash")

    _source: str | None = PrivateAttr(default=None)

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
        lean = _non_default(self)
        if paths:
            full = self.dump()
            for p in paths:
                _get_path(full, p.split("."))  # KeyError for a typo
            parts = {p: _get_path(lean, p.split("."), missing=_DEFAULT) for p in paths}
        else:
            parts = lean
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_recipe(
    source: str | Path | dict[str, Any],
    overrides: Sequence[str] = (),
    *,
    registry: Registry = REGISTRY,
) -> Recipe:
    """Read, override and fully validate a recipe; raise :class:`RecipeError` listing every problem.

    ``overrides`` are ``"dotted.path=value"`` strings; values are parsed as YAML
    (``train.denoiser.steps=10``, ``conditioners.1.dropout=0.3``, ``sample.labels=[0,1]``).
    """
    lines: dict[str, int] = {}
    label: str | None = None
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise RecipeError([("", f"recipe file not found: {path}")], source=None)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError([("", f"not a text file: byte {exc.start} is not UTF-8 (a recipe is a YAML "
                                    "text file)")], source=label) from None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            _check_expanded_size(root, label)  # before anything walks the aliases
            raw = yaml.safe_load(text)
            lines = _line_map(root)
        except yaml.YAMLError as exc:
            raise RecipeError([("", f"not valid YAML: {exc}")], source=label) from exc
        if not isinstance(raw, dict):
            raise RecipeError([("", "a recipe must be a YAML mapping")], source=label)
    problems: list[tuple[str, str]] = []
    overridden: dict[str, str] = {}
    for item in overrides:
        try:
            overridden[apply_override(raw, item)] = item
        except ValueError as exc:
            problems.append(("--set", str(exc)))
    if problems:
        raise RecipeError(problems, source=label)

    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        # Report the structure's problems AND those of every component node that can be checked,
        # so that one `vqvdm validate` shows everything to fix.
        problems = _pydantic_problems(exc, model=Recipe)
        reported = [path for path, _ in problems]
        for path, kind, node in _raw_components(raw):
            if any(r == path or r.startswith(path + ".") for r in reported):
                continue
            try:
                spec = ComponentSpec.model_validate(node)
            except ValidationError:
                continue
            problems.extend(_component_problems(path, kind, spec, registry))
        raise RecipeError(_located(problems, lines, overridden), source=label) from None
    recipe._source = label

    for path, kind, spec in recipe.components():
        problems.extend(_component_problems(path, kind, spec, registry))
    if problems:
        raise RecipeError(_located(problems, lines, overridden), source=label)
    return recipe


def _component_problems(path: str, kind: str, spec: ComponentSpec,
                        registry: Registry) -> list[tuple[str, str]]:
    """Phase two for one node: look its name up and validate its fields against its ``Config``."""
    try:
        spec.resolve(kind, registry)
    except ComponentError as exc:
        return [(f"{path}.name", str(exc))]
    except ValidationError as exc:
        fields = list(registry.load(kind, spec.name).Config.model_fields)
        return _pydantic_problems(exc, prefix=path, known_fields=fields)
    return []


def _raw_components(raw: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """The component nodes of unvalidated recipe data, as ``(recipe path, kind, node)``."""
    for slot, kind, many in COMPONENT_SLOTS:
        node: Any = raw
        for part in slot.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        if not many:
            yield slot, kind, node
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield f"{slot}.{i}", kind, item


def validate_recipes(paths: Iterable[str | Path], overrides: Sequence[str] = ()) -> dict[str, RecipeError | None]:
    """Validate several recipe files; map each path to its error or None."""
    out: dict[str, RecipeError | None] = {}
    for p in paths:
        try:
            load_recipe(p, overrides)
            out[str(p)] = None
        except RecipeError as exc:
            out[str(p)] = exc
    return out


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe (defaults filled) with ``yaml.safe_dump``."""
    Path(path).write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))


def apply_override(data: dict[str, Any], item: str) -> str:
    """Apply one ``dotted.path=value`` override to ``data`` in place; return the dotted path.

    The value is parsed as YAML (``3`` is an int, ``[0, 1]`` a list, ``null`` None). Missing
    mappings on the way are created; a bare component name on the way (``schedule: ddpm``) becomes
    the node ``{name: ddpm}`` so that ``schedule.num_train_steps=50`` can set one of its fields.
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override '{item}' is not of the form dotted.path=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override '{item}': value is not valid YAML: {exc}") from None
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ValueError(f"override '{item}': '{key.strip()}' has an empty part")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            slot: Any = _index(part, node, here)
        else:  # a mapping: the loop only descends into mappings and lists
            slot = part
            if node.get(part) is None:
                node[part] = {}
        child = node[slot]
        if isinstance(child, str):
            child = node[slot] = {"name": child}  # a bare component name
        if not isinstance(child, (dict, list)):
            raise ValueError(
                f"override '{item}': '{here}' is a {type(child).__name__}, not a mapping or list"
            )
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key.strip())] = parsed
    else:
        node[last] = parsed
    return ".".join(parts)


def _index(part: str, node: list[Any], where: str) -> int:
    try:
        i = int(part)
        if i < 0:
            raise IndexError(i)
        node[i]
    except (ValueError, IndexError):
        span = f"0..{len(node) - 1}" if node else "empty (the list has no items)"
        raise ValueError(f"'{where}': list index '{part}' is not in {span}") from None
    return i


def _pydantic_problems(exc: ValidationError, *, prefix: str = "",
                       known_fields: list[str] | None = None,
                       model: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """``(recipe path, message)`` per error; an unknown field names its nearest known field, taken
    from ``known_fields`` or, for errors of ``model`` itself, from the model at the error's place."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # Component nodes hold their fields under "options" after phase one; hide that.
        loc = [p for p in loc if p != "options"]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and loc:
            candidates = known_fields
            if candidates is None:
                parent = _model_at(model, loc[:-1]) if model is not None else None
                candidates = list(parent.model_fields) if parent is not None else []
            near = difflib.get_close_matches(loc[-1], candidates, n=1, cutoff=0.6)
            msg = f"unknown field '{loc[-1]}'" + (f"; did you mean '{near[0]}'?" if near else "")
            if candidates:
                msg += f" (fields: {', '.join(candidates)})"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append((path, msg))
    return out


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model that validates the value at ``loc`` inside ``model`` (None if unknown)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if part.isdigit():  # an index into a list field: same item model
            continue
        info = current.model_fields.get(part)
        current = _model_in(info.annotation) if info is not None else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[M], list[M], ...
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _located(problems: list[tuple[str, str]], lines: dict[str, int],
             overridden: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Append where each problem comes from: the ``--set`` that wrote it, or its YAML line."""
    overridden = overridden or {}
    out = []
    for path, msg in problems:
        setters = [k for k in overridden if path == k or path.startswith(k + ".")]
        if setters:
            out.append((path, f"{msg} (from --set {overridden[max(setters, key=len)]})"))
            continue
        line = _nearest_line(path, lines)
        out.append((path, f"{msg} (line {line})" if line else msg))
    return out


def _nearest_line(path: str, lines: dict[str, int]) -> int | None:
    parts = path.split(".")
    while parts:
        key = ".".join(parts)
        if key in lines:
            return lines[key]
        parts.pop()
    return None


MAX_RECIPE_VALUES = 100_000
"""The most values a recipe may expand to through YAML aliases (a real recipe has a few hundred)."""


def _check_expanded_size(root: yaml.Node | None, label: str | None) -> None:
    """Refuse a YAML document whose aliases expand it past :data:`MAX_RECIPE_VALUES` values (a
    "billion laughs" file) or into a cycle, in time linear in the document: shared nodes are sized
    once."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RecipeError([("", "a YAML alias refers to a node that contains it (a recursive recipe)")],
                              source=label)
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = min(total, MAX_RECIPE_VALUES + 1)
        if total > MAX_RECIPE_VALUES:
            raise RecipeError([("", f"the recipe expands to more than {MAX_RECIPE_VALUES:,} values through YAML "
                                    "aliases (anchors & and references *); a recipe has a few hundred")],
                              source=label)
        return sizes[key]

    if root is not None:
        size(root)


def _line_map(root: yaml.Node | None) -> dict[str, int]:
    """Dotted recipe path -> 1-based line of its key in the composed YAML document."""
    out: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: list[str]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = prefix + [str(key.value)]
                out[".".join(path)] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                path = prefix + [str(i)]
                out[".".join(path)] = value.start_mark.line + 1
                walk(value, path)

    if root is not None:
        walk(root, [])
    return out


_DEFAULT = "<default>"
"""What :meth:`Recipe.hash` records for a part left at its default."""


def _non_default(value: Any) -> Any:
    """``value`` as JSON-safe data keeping only the model fields that differ from their default.

    A component node keeps its ``name`` and the non-default fields of its resolved ``Config``.
    """
    if isinstance(value, ComponentSpec):
        fields = _non_default(value._config) if value._config is not None else value.options
        if isinstance(value, SamplerSpec) and not fields:
            return value.name  # as the plain name such a setting was before samplers were plug-ins
        return {"name": value.name, **fields}
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            current = getattr(value, name)
            if field.is_required() or isinstance(current, ComponentSpec):
                out[name] = _non_default(current)
                continue
            default = field.get_default(call_default_factory=True)
            if to_jsonable_python(current) != to_jsonable_python(default):
                out[name] = _non_default(current)
        return out
    if isinstance(value, (list, tuple)):
        return [_non_default(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _non_default(v) for k, v in value.items()}
    return to_jsonable_python(value)


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

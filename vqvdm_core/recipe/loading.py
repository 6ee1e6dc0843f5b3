"""Loading a recipe file: YAML (safely sized), ``--set`` overrides, then validation in three phases
(the structure, each component node against its ``Config``, then the schedule against the denoiser's
prediction type and the samplers) with every problem collected at its recipe path and YAML line (or
the ``--set`` that wrote it)."""

from __future__ import annotations

import copy
import difflib
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vqvdm_core.errors import ComponentError, RecipeError, UserError
from vqvdm_core.recipe.overrides import apply_override
from vqvdm_core.recipe.schema import COMPONENT_SLOTS, ComponentSpec, Recipe
from vqvdm_core.registry import REGISTRY, Registry


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
        if path.is_dir():
            inside = path / "recipe.yaml"
            hint = f" (a run directory: its recipe is {inside})" if inside.is_file() else ""
            raise RecipeError([("", f"{path} is a directory, not a recipe file{hint}")], source=None)
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
    if not problems:
        problems.extend(_sampling_problems(recipe, registry))
    if problems:
        raise RecipeError(_located(problems, lines, overridden), source=label)
    return recipe


def _sampling_problems(recipe: Recipe, registry: Registry) -> list[tuple[str, str]]:
    """Phase three: the schedule with the denoiser's prediction type and with each stage's sampler
    (its spacing, its space), so that a combination that cannot run is refused at load time."""
    from vqvdm_core.interfaces.sampler import resolve_sampler, sampling_chain  # torch: only once a recipe loads

    try:
        schedule = recipe.schedule.build("schedule", registry)
    except Exception as exc:  # a schedule whose tables cannot be built from valid fields
        return [("schedule", str(exc))]
    problems: list[tuple[str, str]] = []
    prediction_type = getattr(recipe.denoiser.config, "prediction_type", None)
    if prediction_type is not None:
        try:
            schedule.check_prediction_type(prediction_type)
        except UserError as exc:
            problems.append(("denoiser.prediction_type", str(exc)))
    for slot, settings in (("sample.sampler", recipe.sample), ("evaluate.sampler", recipe.evaluate)):
        if settings.sampler is None and schedule.default_sampler() is None:
            continue
        try:
            sampler = resolve_sampler(settings.sampler, schedule=schedule, registry=registry)
            # A 2-level chain: its spacing, first level and space are those of any length (the step
            # count is checked when sampling, as before: recipes that only train keep loading).
            chain = sampling_chain(sampler, schedule, 2)
            if prediction_type is not None:
                schedule.check_prediction_type(prediction_type, chain)
        except (UserError, ComponentError) as exc:
            where = f"{slot}.spacing" if "spacing" in str(exc) and settings.sampler is not None else slot
            problems.append((where, str(exc)))
    return problems


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
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # a validator's own sentence, without pydantic's "Value error, "
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


"""Generate ``docs/recipes.md`` from the pydantic models, so the reference cannot drift.

``python -m vqvdm_core.recipe.docs > docs/recipes.md`` rewrites it; a test checks it is current.

Types are written as a recipe author writes values in YAML: ``null`` for None, a Literal as its
choices (``"fp32" | "bf16"``), tuples as lists, constraints beside the type (``int ≥ 1``), nested
settings and component nodes as links to their sections.
"""

from __future__ import annotations

import io
import json
import types
import typing
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vqvdm_core import recipe as r
from vqvdm_core.registry import KINDS, REGISTRY

SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    # (recipe path of the section, its anchor, model)
    ("", "top-level", r.Recipe),
    ("data", "data", r.DataSettings),
    ("train", "train", r.StageTraining),
    ("train.tokenizer", "train-stage", r.TrainSettings),
    ("train.tokenizer.optimizer", "optimizer", r.OptimizerSettings),
    ("latents", "latents", r.LatentSettings),
    ("sample", "sample", r.SampleSettings),
    ("evaluate", "evaluate", r.EvaluateSettings),
    ("runtime", "runtime", r.RuntimeSettings),
]
TITLES = {
    "top-level": "Top level",
    "train-stage": "`train.tokenizer`, `train.denoiser`",
    "optimizer": "`train.*.optimizer`",
}
ANCHORS = {model: anchor for _, anchor, model in SECTIONS}

# Where a recipe holds component nodes: recipe path -> (kind, is a list). Both training stages
# share one model, documented at the train.tokenizer path.
SLOTS = {path: (kind, many) for path, kind, many in r.COMPONENT_SLOTS}


def _kind_anchor(kind: str) -> str:
    return f"kind-{kind}"


def _constraints(metadata: list[Any]) -> tuple[str, str]:
    """``(bounds, lengths)`` from pydantic's field metadata: ``"≥ 1"``, ``"> 0, < 1"``; ``"at least 1 item"``."""
    bounds, lengths = [], []
    for m in metadata:
        if isinstance(m, at.Ge):
            bounds.append(f"≥ {m.ge}")
        elif isinstance(m, at.Gt):
            bounds.append(f"> {m.gt}")
        elif isinstance(m, at.Le):
            bounds.append(f"≤ {m.le}")
        elif isinstance(m, at.Lt):
            bounds.append(f"< {m.lt}")
        elif isinstance(m, at.MinLen) and m.min_length:
            lengths.append(f"at least {m.min_length} item{'s' if m.min_length > 1 else ''}")
        elif isinstance(m, at.MaxLen):
            lengths.append(f"at most {m.max_length} items")
    return ", ".join(bounds), ", ".join(lengths)


def _constrained(text: str, ann: Any, metadata: list[Any]) -> str:
    """``text`` with its constraints: ``int ≥ 1 | null``, ``list of int (at least 1 item)``."""
    bounds, lengths = _constraints(metadata)
    optional = type(None) in typing.get_args(ann) and text.endswith(" | null")
    core = text.removesuffix(" | null") if optional else text
    if bounds:
        core = f"{core} {bounds}"
    if lengths:
        core = f"{core} ({lengths})"
    return f"{core} | null" if optional else core


def _type_text(ann: Any) -> str:
    """An annotation as a recipe author reads it (before table escaping)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None) or ann is None:
        return "null"
    if ann is Any:
        return "any"
    if origin is typing.Annotated:
        metadata = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return _constrained(_type_text(args[0]), args[0], metadata)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        # null last, as "X | null" reads
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin in (list, tuple, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):  # fixed length
            items = [_type_text(a) for a in args]
            if len(set(items)) == 1 and len(items) > 2:
                return f"[{items[0]}] × {len(items)}"
            return "[" + ", ".join(items) + "]"
        if not args:
            return "list"
        item = _type_text(args[0])
        return f"list of ({item})" if " | " in item else f"list of {item}"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}" if args else "mapping"
    if isinstance(ann, type) and issubclass(ann, BaseModel) and ann in ANCHORS:
        return f"[{ann.__name__}](#{ANCHORS[ann]})"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def field_type(info: FieldInfo) -> str:
    """A Config field's type as a recipe author reads it, constraints included: ``"uniform" |
    "trailing"``, ``[int, int]``, ``int ≥ 1 | null`` (plain text, for the CLI)."""
    return _constrained(_type_text(info.annotation), info.annotation, info.metadata)


def _type(path: str, info: FieldInfo) -> str:
    """The type column: component nodes link to their kind; constraints follow the type."""
    if path in SLOTS:
        kind, many = SLOTS[path]
        text = (f"list of [{kind} nodes](#{_kind_anchor(kind)})" if many
                else f"[{kind} node](#{_kind_anchor(kind)})")
        if type(None) in typing.get_args(info.annotation):
            text += " | null"
    else:
        text = _type_text(info.annotation)
    return _cell(_constrained(text, info.annotation, info.metadata))


def _default(info: FieldInfo, wired: str | None = None) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if wired is not None and value is None:
        return _cell(f"*wired*: {wired}")
    if isinstance(value, r.ComponentSpec):
        return _cell(f"`{value.name}`")
    if isinstance(value, BaseModel):
        anchor = ANCHORS.get(type(value))
        return f"[see below](#{anchor})" if anchor else "(nested)"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except TypeError:
        text = str(value)
    return _cell(f"`{text}`")


def _cell(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _description(info: FieldInfo) -> str:
    text = info.description
    if not text and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
        text = _first_paragraph(info.annotation.__doc__)  # a nested section: its summary
    return _cell((text or "").replace("``", "`"))


def _fields_table(model: type[BaseModel], out: io.StringIO, *, path: str = "",
                  wired: dict[str, str] | None = None) -> None:
    wired = wired or {}
    out.write("| field | type | default | description |\n|---|---|---|---|\n")
    for name, info in model.model_fields.items():
        here = f"{path}.{name}" if path else name
        source = wired.get(name)
        out.write(f"| `{name}` | {_type(here, info)} | {_default(info, source)} | "
                  f"{_description(info)} |\n")
    out.write("\n")


def _first_paragraph(doc: str | None) -> str:
    lines = []
    for line in (doc or "").strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines).replace("``", "`")


def render() -> str:
    """The whole reference as Markdown."""
    from vqvdm_core.system import WIRED_FIELDS

    out = io.StringIO()
    out.write("# Recipe reference\n\n")
    out.write("<!-- Generated by `python -m vqvdm_core.recipe.docs > docs/recipes.md` from the pydantic "
              "models; do not edit by hand. -->\n\n")
    out.write("A recipe is a YAML file (see `recipes/` for the paper's). Each section below lists the "
              "fields of one part of it with their types, defaults and meaning. Any field can be "
              "overridden from the command line with `--set dotted.path=value` (the value is read as "
              "YAML), e.g. `--set train.denoiser.steps=10 --set conditioners.1.dropout=0.3`.\n\n")
    out.write("A *component node* is `{name: <registered name>, <fields of its Config>...}`, or just the "
              "name. Its fields are those of the component registered under that name "
              "([Components](#components)). A field whose default is *wired* is filled by the "
              "system from another component when the recipe leaves it unset.\n\n")
    out.write("**Settings:** " + " · ".join(f"[{TITLES.get(a, f'`{p}`')}](#{a})" for p, a, _ in SECTIONS)
              + "\n\n")
    for path, anchor, model in SECTIONS:
        out.write(f'<a id="{anchor}"></a>\n\n## {TITLES.get(anchor, f"`{path}`")}\n\n')
        doc = _first_paragraph(model.__doc__)
        if doc:
            out.write(doc + "\n\n")
        _fields_table(model, out, path=path)

    out.write('<a id="components"></a>\n\n# Components\n\n')
    out.write("The components this distribution registers. Third-party plug-ins add their own "
              "(`vqvdm list-components -v` shows every installed one with its fields).\n\n")
    entries = [e for e in REGISTRY.try_load_all() if e.distribution == "vqvdm"]
    slots_of = {kind: [p for p, k, _ in r.COMPONENT_SLOTS if k == kind] for kind in KINDS}
    for kind in KINDS:
        of_kind = [e for e in entries if e.kind == kind]
        if not of_kind:
            continue
        out.write(f'<a id="{_kind_anchor(kind)}"></a>\n\n## {kind} components\n\n')
        where = ", ".join(f"`{p}`" for p in slots_of[kind])
        # A kind with no slot of its own is a node inside another component's config (a tokenizer's
        # ``quantizer``): say so instead of naming no place.
        used = f"Used at {where}" if where else "Used as a node inside another component's config (e.g. a tokenizer's `quantizer`)"
        out.write(f"{used}. Names: " + ", ".join(f"[`{e.name}`](#{kind}-{e.name})" for e in of_kind)
                  + ".\n\n")
        for entry in of_kind:
            out.write(f'<a id="{kind}-{entry.name}"></a>\n\n### {kind} `{entry.name}`\n\n')
            if entry.obj is None:
                out.write(f"(could not be imported: {entry.error})\n\n")
                continue
            out.write(f"{entry.summary()}\n\n`{entry.target}`\n\n")
            config: Any = entry.obj.Config
            if config.model_fields:
                _fields_table(config, out, wired={f: s for f, s in WIRED_FIELDS.get(kind, {}).items()
                                                  if f in config.model_fields})
            else:
                out.write("No settings.\n\n")
    return out.getvalue()


if __name__ == "__main__":
    print(render(), end="")

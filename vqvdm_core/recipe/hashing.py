"""Recipe hashing (:meth:`Recipe.hash <vqvdm_core.recipe.schema.Recipe.hash>`): a stable hash of
recipe parts that only sees fields differing from their defaults, so that run directories outlive
library upgrades adding defaulted fields."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from vqvdm_core.recipe.schema import ComponentSpec, Recipe, SamplerSpec, _get_path


def recipe_hash(recipe: Recipe, *paths: str) -> str:
    """:meth:`Recipe.hash <vqvdm_core.recipe.schema.Recipe.hash>`: the hash of ``recipe``'s parts at
    ``paths`` (all of it when none), default-valued fields left out; ``KeyError`` for a path that
    names no part of a recipe."""
    lean = _non_default(recipe)
    if recipe.guidance is None:
        # Recipes without guidance hashed their (then default) "none" node: keep their run directories.
        lean["guidance"] = _NO_GUIDANCE_BEFORE
    if paths:
        full = recipe.dump()
        for p in paths:
            _get_path(full, p.split("."))  # KeyError for a typo
        parts = {p: _get_path(lean, p.split("."), missing=_DEFAULT) for p in paths}
    else:
        parts = lean
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_NO_GUIDANCE_BEFORE = {"name": "none"}
"""How a recipe without guidance entered the hash when the schema's default was the node ``none``."""

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


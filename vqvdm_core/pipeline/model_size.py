"""Before any work: a recipe whose models or clips cannot fit in memory, refused naming the field.

A typo such as ``num_classes: 1000000000`` or ``channels: 1280000`` is a valid recipe; without this
check it trains the tokenizer and caches latents, then fails in the denoiser stage with an
out-of-memory error that names no setting. :func:`check_sizes` builds the model's components
(tokenizer, denoiser, conditioners) on PyTorch's ``meta`` device, where a tensor has a shape but no
storage, so a model of any size is built in milliseconds; it counts what training them needs (fp32
weights, gradients and Adam's two moments: 4 copies of every trained parameter, 1 of a frozen one)
and the pixels of one training batch, and compares that with the device's memory.

When it does not fit, the field to blame is found by trying: each integer field of the largest
component (or of the data set, for the clips) is halved in turn, and the one whose halving shrinks
the size most is named, with the recipe path where it is set, or the setting it is wired from
(``data.train.num_classes`` for a class conditioner's table). These are lower bounds (activations come
on top), so a recipe refused here could never have run; one that passes may still run out of memory,
and then gets the generic message with the batch-size advice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from vqvdm_core.errors import UserError
from vqvdm_core.io.atomic import human_bytes
from vqvdm_core.registry import REGISTRY, Registry

__all__ = ["SizeProblem", "check_sizes", "device_memory"]

TRAINED_COPIES = 4
"""fp32 copies of a trained parameter while training: the weight, its gradient, Adam's two moments."""

TRAINS: dict[str, tuple[str, ...]] = {"tokenizer": ("tokenizer",), "denoiser": ("denoiser", "conditioners")}
"""The recipe paths (prefixes) each training stage trains."""

USES: dict[str, tuple[str, ...]] = {"tokenizer": ("tokenizer",), "latents": ("tokenizer",)}
"""The model components a stage holds, where it is not all of them."""


class SizeProblem(UserError):
    """A recipe whose models or clips need more memory than the device has."""


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device`` (physical RAM for the CPU, the GPU's total); None if unknown."""
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    return None


@dataclass
class _Part:
    """One model component: where it is in the recipe, its config with the wired values, and the
    values that were wired (not set in the recipe) with the setting each comes from."""

    path: str
    kind: str
    spec: Any
    config: BaseModel
    wired_from: dict[str, str]
    trained: int  # bytes of trainable parameters
    frozen: int  # bytes of the other parameters and buffers


def _meta_build(cls: type, config: BaseModel) -> torch.nn.Module | None:
    """``cls(config)`` built on the meta device; None when it cannot be built that way (a constructor
    that computes on its tensors, needs real storage, or refuses the config: the real build says why)."""
    try:
        with torch.device("meta"):
            module = cls(config)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a component we cannot size is not checked here
        return None
    return module if isinstance(module, torch.nn.Module) else None


def _sizes(module: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, other)`` bytes of ``module``'s parameters (and buffers, in the other)."""
    trained = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    other = sum(p.numel() * p.element_size() for p in module.parameters() if not p.requires_grad)
    return trained, other + sum(b.numel() * b.element_size() for b in module.buffers())


def _meta_bytes(cls: type, config: BaseModel) -> tuple[int, int] | None:
    """:func:`_sizes` of ``cls(config)`` built on the meta device (see :func:`_meta_build`)."""
    module = _meta_build(cls, config)
    return None if module is None else _sizes(module)


def _with(config: BaseModel, **changes: Any) -> BaseModel | None:
    """``config`` with ``changes``, validated; None when the changed config is not valid."""
    try:
        return type(config).model_validate({**config.model_dump(), **changes})
    except (ValidationError, ValueError, TypeError):
        return None


def _int_fields(config: BaseModel) -> list[str]:
    return [name for name in type(config).model_fields
            if isinstance(getattr(config, name), int) and not isinstance(getattr(config, name), bool)
            and getattr(config, name) >= 2]


SMALL_VALUES = (1, 2, 4, 8, 16, 32, 64)
"""What a field is set to when it is tried for blame: the first of these the component accepts."""


def _most_sensitive(config: BaseModel, measure: Callable[[BaseModel], int | None]) -> str | None:
    """The integer field of ``config`` that accounts for the most of ``measure``: each field in turn is
    set to the smallest value the component accepts (:data:`SMALL_VALUES`), and the field whose
    change shrinks ``measure`` by the largest factor is named (None if no field shrinks it)."""
    base = measure(config)
    if not base:
        return None
    best, best_factor = None, 1.0
    for name in _int_fields(config):
        for small in (v for v in SMALL_VALUES if v < getattr(config, name)):
            changed = _with(config, **{name: small})
            size = measure(changed) if changed is not None else None
            if size is not None:
                factor = base / max(size, 1)
                if factor > best_factor:
                    best, best_factor = name, factor
                break
    return best


def _data_source(recipe: Any, registry: Registry) -> tuple[str, Any, Any]:
    spec = recipe.data.train
    return "data.train", spec, registry.load("dataset", spec.name)


def _num_classes(recipe: Any, registry: Registry) -> tuple[int, str]:
    """The training data's class count from its config (1 when only the built data set can tell:
    the count then comes from files, which are real) and the setting it comes from."""
    path, spec, cls = _data_source(recipe, registry)
    count = cls.num_classes_of(spec.config)
    field = "num_classes" if "num_classes" in type(spec.config).model_fields else None
    where = f"{path}.{field}" if field else f"the classes of {path} ({spec.name})"
    return (int(count) if count else 1), where


def _parts(recipe: Any, registry: Registry) -> list[_Part]:
    """The model components with their wired configs (as :func:`build_system` wires them), sized."""
    from vqvdm_core.system.diffusion import WIRED_FIELDS

    parts: list[_Part] = []

    def add(path: str, kind: str, spec: Any, wired: dict[str, tuple[Any, str]]) -> torch.nn.Module | None:
        cls = registry.load(kind, spec.name)
        config = spec.config
        fill = {k: v for k, (v, _) in wired.items()
                if v is not None and k in type(config).model_fields and getattr(config, k) is None}
        if fill:
            filled = _with(config, **fill)
            if filled is None:
                return None
            config = filled
        module = _meta_build(cls, config)
        if module is None:
            return None
        parts.append(_Part(path, kind, spec, config, {k: wired[k][1] for k in fill}, *_sizes(module)))
        return module

    tokenizer = add("tokenizer", "tokenizer", recipe.tokenizer, {})
    latent = getattr(tokenizer, "latent_channels", None)
    denoiser = add("denoiser", "denoiser", recipe.denoiser,
                   {"in_channels": (latent, WIRED_FIELDS["denoiser"]["in_channels"])})
    emb_dim = getattr(denoiser, "emb_dim", None)
    classes, classes_from = _num_classes(recipe, registry)
    for i, spec in enumerate(recipe.conditioners):
        add(f"conditioners.{i}", "conditioner", spec,
            {"num_classes": (classes, classes_from), "emb_dim": (emb_dim, "the denoiser's emb_dim")})
    return parts


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _trained_in(path: str, stage: str) -> bool:
    return _under(path, TRAINS.get(stage, ()))


def _held(part: _Part, stage: str) -> int:
    """Bytes ``stage`` holds for ``part``: 4 copies of what it trains, 1 of what it uses, 0 otherwise."""
    if stage in USES and not _under(part.path, USES[stage]):
        return 0
    return (TRAINED_COPIES if _trained_in(part.path, stage) else 1) * part.trained + part.frozen


def _stage_need(parts: Sequence[_Part], stage: str) -> int:
    return sum(_held(p, stage) for p in parts)


def _blame(part: _Part, registry: Registry) -> str:
    """``"conditioners.1.num_classes = 1000000000"`` (or the setting a wired value comes from)."""
    cls = registry.load(part.kind, part.spec.name)

    def measure(config: BaseModel) -> int | None:
        sizes = _meta_bytes(cls, config)
        return None if sizes is None else sizes[0] + sizes[1]

    field = _most_sensitive(part.config, measure)
    if field is None:
        return f"{part.path} ({part.spec.name})"
    value = getattr(part.config, field)
    if field in part.wired_from:
        return f"{part.path}.{field} = {value} (not set in the recipe: wired from {part.wired_from[field]})"
    return f"{part.path}.{field} = {value}"


def _check_clips(recipe: Any, stages: Sequence[str], memory: int, where: str, registry: Registry) -> None:
    """One training batch of float32 pixel clips must fit, for the stages that read pixel clips."""
    from vqvdm_core.recipe import Recipe

    if not isinstance(recipe, Recipe) or not {"tokenizer", "latents"} & set(stages):
        return
    path, spec, cls = _data_source(recipe, registry)
    batch = max(recipe.train.tokenizer.batch_size if "tokenizer" in stages else 1,
                recipe.latents.batch_size if "latents" in stages else 1)

    def measure(config: BaseModel) -> int | None:
        try:
            shape = cls.clip_shape_of(config)
        except Exception:  # noqa: BLE001
            return None
        return None if shape is None else batch * 3 * int(shape[0]) * int(shape[1]) * int(shape[2]) * 4

    need = measure(spec.config)
    if need is None or need <= memory:
        return
    field = _most_sensitive(spec.config, measure)
    blame = f"{path}.{field} = {getattr(spec.config, field)}" if field else f"{path} ({spec.name})"
    raise SizeProblem(f"{blame} makes one batch of {batch} training clips {human_bytes(need)} of pixels "
                      f"(float32), more than the {human_bytes(memory)} of memory on {where}: lower it. Nothing "
                      "was run.")


def check_sizes(recipe: Any, *, stages: Sequence[str], device: torch.device, registry: Registry = REGISTRY,
                memory: int | None = None) -> None:
    """Refuse (:class:`SizeProblem`) a recipe whose pending ``stages`` cannot fit in ``memory`` bytes
    (default: :func:`device_memory` of ``device``), naming the field that makes it so large."""
    memory = memory if memory is not None else device_memory(device)
    if memory is None or not stages:
        return
    where = f"this machine ({device.type})" if device.type == "cpu" else str(device)
    _check_clips(recipe, stages, memory, where, registry)
    parts = _parts(recipe, registry)
    stage = next((s for s in stages if _stage_need(parts, s) > memory), None)  # the first to fail
    if stage is None:
        return
    need = _stage_need(parts, stage)
    worst = max(parts, key=lambda p: _held(p, stage))
    copies = ("4 fp32 copies of what it trains: weights, gradients, Adam's two moments; 1 of the rest"
              if any(_trained_in(p.path, stage) for p in parts) else "the fp32 weights")
    raise SizeProblem(
        f"{_blame(worst, registry)} makes {worst.path} ({worst.spec.name}) "
        f"{human_bytes(worst.trained + worst.frozen)} of parameters; the {stage} stage would need at least "
        f"{human_bytes(need)} for the model ({copies}), more than the {human_bytes(memory)} of memory on "
        f"{where}: lower it. Nothing was run.")

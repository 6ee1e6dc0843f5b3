"""Which conditions (class, FPS and any other conditioner field) the sample and evaluate stages generate.

Other fields (a plug-in conditioner's ``motion``...) take the values the latents stage recorded for
them (``condition_values`` in its ``stage.json``: the distinct values of the training data, at most
:data:`MAX_FIELD_VALUES` of them spread over their range), cycled along the (class, FPS) pairs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NO_LABEL


MAX_FIELD_VALUES = 8
"""Values of one other conditioner field that the latents stage records for sampling."""


@dataclass
class Conditions:
    labels: list[int]
    fps: list[float]
    captions: list[str]
    values: dict[str, list[float]] = field(default_factory=dict)
    """Every other conditioner field -> one value per clip."""

    def __len__(self) -> int:
        return len(self.labels)

    def chunk(self, start: int, stop: int) -> "Conditions":
        return Conditions(self.labels[start:stop], self.fps[start:stop], self.captions[start:stop],
                          {k: v[start:stop] for k, v in self.values.items()})

    def as_lists(self) -> dict[str, list[Any]]:
        """Field -> one value per clip, every field (``label``, ``fps`` and the others)."""
        return {"label": list(self.labels), "fps": list(self.fps), **{k: list(v) for k, v in self.values.items()}}

    def tensors(self, device: "torch.device | str" = "cpu") -> "dict[str, torch.Tensor]":
        """Field -> ``(N,)`` tensor, every field (what ``system.sample(conditions=)`` and metrics take)."""
        import torch

        out = {"label": torch.tensor(self.labels, dtype=torch.long, device=device),
               "fps": torch.tensor(self.fps, dtype=torch.float32, device=device)}
        out.update({k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in self.values.items()})
        return out


def field_values(values: list[float], limit: int = MAX_FIELD_VALUES) -> list[float]:
    """The distinct ``values`` sorted, thinned to at most ``limit`` spread over their range."""
    distinct = sorted({round(float(v), 4) for v in values})
    if len(distinct) <= limit:
        return distinct
    return [distinct[round(i * (len(distinct) - 1) / (limit - 1))] for i in range(limit)]


def _with_values(meta: dict[str, Any], base: Conditions) -> Conditions:
    """``base`` with each other field's recorded values cycled along it, named in the captions."""
    extra = {k: list(v) for k, v in (meta.get("condition_values") or {}).items() if v}
    n = len(base)
    values = {k: list(itertools.islice(itertools.cycle(v), n)) for k, v in extra.items()}
    captions = [" ".join([c, *(f"{k} {values[k][i]:g}" for k in values)]) for i, c in enumerate(base.captions)]
    return Conditions(base.labels, base.fps, captions, values)


def _label_values(meta: dict[str, Any], labels: list[int] | Literal["all"] | None) -> list[int]:
    num_classes = int(meta.get("num_classes", 0))
    if labels is None or num_classes == 0:
        return [NO_LABEL]
    values = list(range(num_classes)) if labels == "all" else list(labels)
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise UserError(f"class indices {bad} are out of range: the data has {num_classes} classes")
    return values


def _caption(meta: dict[str, Any], label: int, fps: float) -> str:
    names = meta.get("class_names") or []
    parts = []
    if label != NO_LABEL:
        parts.append(names[label] if label < len(names) else f"class {label}")
    parts.append(f"{fps:g} fps")
    return " ".join(parts)


def grid_size(meta: dict[str, Any], *, labels: list[int] | Literal["all"] | None,
              fps: list[float] | None, per_condition: int) -> int:
    """How many conditions :func:`grid` makes, without making them."""
    return len(_label_values(meta, labels)) * len(_fps_values(meta, fps)) * per_condition


def _fps_values(meta: dict[str, Any], fps: list[float] | None) -> list[float]:
    fps_values = list(fps) if fps else list(meta.get("fps_values") or [])
    if not fps_values:
        raise UserError("no FPS values to sample: set sample.fps in the recipe")
    return fps_values


def grid(meta: dict[str, Any], *, labels: list[int] | Literal["all"] | None,
         fps: list[float] | None, per_condition: int) -> Conditions:
    """Every (label, fps) pair ``per_condition`` times, label-major (one grid row per label)."""
    fps_values = _fps_values(meta, fps)
    pairs = [(lab, f) for lab in _label_values(meta, labels) for f in fps_values for _ in range(per_condition)]
    return _with_values(meta, Conditions([p[0] for p in pairs], [float(p[1]) for p in pairs],
                                         [_caption(meta, *p) for p in pairs]))


def cycle(meta: dict[str, Any], count: int, *, fps: list[float] | None) -> "CycledConditions":
    """``count`` conditions cycling evenly through every class and FPS value (for metrics)."""
    base = grid({k: v for k, v in meta.items() if k != "condition_values"}, labels="all", fps=fps,
                per_condition=1)
    extra = {k: list(v) for k, v in (meta.get("condition_values") or {}).items() if v}
    return CycledConditions(base, count, extra)


class CycledConditions:
    """What :func:`cycle` returns: ``count`` conditions, clip ``i`` taking the ``i``-th (class, FPS) pair
    of ``base`` and the ``i``-th value of each other field, both cycled. Made a chunk at a time, so an
    evaluation of millions of clips holds no list of them; the attributes of :class:`Conditions`
    (``labels``, ``fps``, ``captions``, ``values``, ``as_lists``, ``tensors``) make the whole list."""

    def __init__(self, base: Conditions, count: int, extra: dict[str, list[float]]):
        self.base, self.count, self.extra = base, count, extra

    def __len__(self) -> int:
        return self.count

    def chunk(self, start: int, stop: int) -> Conditions:
        rows = range(max(0, start), min(stop, self.count))
        n = len(self.base)
        values = {k: [v[i % len(v)] for i in rows] for k, v in self.extra.items()}
        captions = [" ".join([self.base.captions[i % n], *(f"{k} {values[k][j]:g}" for k in values)])
                    for j, i in enumerate(rows)]
        return Conditions([self.base.labels[i % n] for i in rows], [self.base.fps[i % n] for i in rows],
                          captions, values)

    def _whole(self) -> Conditions:
        return self.chunk(0, self.count)

    @property
    def labels(self) -> list[int]:
        return self._whole().labels

    @property
    def fps(self) -> list[float]:
        return self._whole().fps

    @property
    def captions(self) -> list[str]:
        return self._whole().captions

    @property
    def values(self) -> dict[str, list[float]]:
        return self._whole().values

    def as_lists(self) -> dict[str, list[Any]]:
        return self._whole().as_lists()

    def tensors(self, device: "torch.device | str" = "cpu") -> "dict[str, torch.Tensor]":
        return self._whole().tensors(device)

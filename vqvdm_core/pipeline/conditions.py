"""Which (class, FPS) conditions the sample and evaluate stages generate."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NO_LABEL


@dataclass
class Conditions:
    labels: list[int]
    fps: list[float]
    captions: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def chunk(self, start: int, stop: int) -> "Conditions":
        return Conditions(self.labels[start:stop], self.fps[start:stop], self.captions[start:stop])


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


def grid(meta: dict[str, Any], *, labels: list[int] | Literal["all"] | None,
         fps: list[float] | None, per_condition: int) -> Conditions:
    """Every (label, fps) pair ``per_condition`` times, label-major (one grid row per label)."""
    fps_values = list(fps) if fps else list(meta.get("fps_values") or [])
    if not fps_values:
        raise UserError("no FPS values to sample: set sample.fps in the recipe")
    pairs = [(lab, f) for lab in _label_values(meta, labels) for f in fps_values for _ in range(per_condition)]
    return Conditions([p[0] for p in pairs], [float(p[1]) for p in pairs],
                      [_caption(meta, *p) for p in pairs])


def cycle(meta: dict[str, Any], count: int, *, fps: list[float] | None) -> Conditions:
    """``count`` conditions cycling evenly through every class and FPS value (for metrics)."""
    base = grid(meta, labels="all", fps=fps, per_condition=1)
    pairs = list(itertools.islice(itertools.cycle(zip(base.labels, base.fps, base.captions)), count))
    return Conditions([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])

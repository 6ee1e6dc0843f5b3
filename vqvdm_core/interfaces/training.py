"""What the training engine optimises: :class:`Trainable` and the :class:`TrainStep` it returns."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["TrainStep", "Trainable", "iter_parameters"]


@dataclass
class TrainStep:
    """What one training step of a trainable component returns.

    ``losses`` maps optimizer group name to the scalar that group's optimizer minimises, in the
    order the engine steps them (a GAN returns ``{"generator": ..., "discriminator": ...}``).
    ``logs`` holds detached scalars to record (each loss term, codebook usage, ...): numbers, or
    0-dim tensors left on the device, which the trainer reads on the host only when it checks or
    records them (``float(t)`` in a step would make the host wait for the GPU every step).
    """

    losses: dict[str, Tensor]
    logs: dict[str, float | Tensor] = field(default_factory=dict)


class Trainable(abc.ABC):
    """Something the training engine can optimise: named parameter groups and a step function."""

    @abc.abstractmethod
    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer, e.g. ``{"generator": [...], "discriminator": [...]}``."""

    @abc.abstractmethod
    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        """Compute every loss of one step for ``batch``; ``step`` is the global optimizer step."""


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

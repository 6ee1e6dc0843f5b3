"""Exponential moving average of a model's trained weights.

After every optimizer step, for each trained parameter ``p`` with shadow ``e``::

    e <- decay * e + (1 - decay) * p

Only parameters that an optimizer trains are shadowed; frozen parameters and buffers (running
statistics, an EMA codebook) are taken from the model as they are. The shadow lives on the
model's device in float32 or the parameter's dtype, whichever is wider.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Shadow weights ``e = decay * e + (1 - decay) * p`` of the parameters named in ``names``."""

    def __init__(self, model: nn.Module, *, decay: float, params: Iterable[nn.Parameter] | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        wanted = None if params is None else {id(p) for p in params}
        self.names: list[str] = [
            name for name, p in model.named_parameters() if wanted is None or id(p) in wanted
        ]
        named = dict(model.named_parameters())
        self.shadow: dict[str, Tensor] = {
            name: named[name].detach().to(_shadow_dtype(named[name].dtype)).clone() for name in self.names
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every shadow weight toward the model's current weight."""
        named = dict(model.named_parameters())
        shadows = [self.shadow[n] for n in self.names]
        current = [named[n].detach().to(self.shadow[n].dtype) for n in self.names]
        if shadows:
            # e + (1 - decay) * (p - e) == decay * e + (1 - decay) * p
            torch._foreach_lerp_(shadows, current, 1.0 - self.decay)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily give ``model`` the EMA weights; its own weights come back on exit."""
        named = dict(model.named_parameters())
        saved = {n: named[n].detach().clone() for n in self.names}
        with torch.no_grad():
            for n in self.names:
                named[n].copy_(self.shadow[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n in self.names:
                    named[n].copy_(saved[n])

    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s shadowed parameters with the EMA weights."""
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                named[n].copy_(self.shadow[n])

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the EMA weights (``model`` is left unchanged)."""
        twin = copy.deepcopy(model)
        self.copy_to(twin)
        return twin

    def state_dict(self) -> dict[str, object]:
        """Decay and shadow tensors (checkpoint-safe: tensors, floats and strings only)."""
        return {"decay": self.decay, "shadow": {n: self.shadow[n] for n in self.names}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`; the shadowed names must match."""
        shadow = state["shadow"]
        assert isinstance(shadow, dict)
        missing = sorted(set(self.names) - set(shadow))
        unexpected = sorted(set(shadow) - set(self.names))
        if missing or unexpected:
            raise KeyError(f"EMA weights do not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
        for n in self.names:
            self.shadow[n].copy_(shadow[n])


def _shadow_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype.is_floating_point and torch.finfo(dtype).bits < 32:
        return torch.float32
    return dtype

"""The guidance interface: conditional and unconditional predictions combined at sampling time."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor

from vqvdm_core.interfaces.configurable import Configurable
from vqvdm_core.interfaces.denoiser import Denoiser

__all__ = ["Guidance"]


class Guidance(Configurable, abc.ABC):
    """Combines conditional and unconditional predictions at sampling time."""

    kind: ClassVar[str] = "guidance"

    @property
    @abc.abstractmethod
    def scale(self) -> float:
        """The configured guidance scale ``w`` (used when the caller passes none)."""

    @abc.abstractmethod
    def predict(self, denoiser: Denoiser, x_t: Tensor, t: Tensor, *, cond: Tensor | None,
                uncond: Tensor | None, scale: float | None = None) -> Tensor:
        """The guided prediction for ``x_t``; ``cond``/``uncond`` are ``(B, D)`` embeddings or None."""

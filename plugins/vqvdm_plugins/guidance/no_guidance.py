"""No guidance: the denoiser's conditional prediction as is (unconditional systems such as Sky)."""

from __future__ import annotations

from torch import Tensor

from vqvdm_core.interfaces import Denoiser, Guidance
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["NoGuidance"]


class NoGuidance(Guidance):
    """No guidance: one forward with the conditional embedding (for unconditional systems)."""

    class Config(ComponentConfig):
        pass

    @property
    def scale(self) -> float:
        return 1.0

    def predict(self, denoiser: Denoiser, x_t: Tensor, t: Tensor, *, cond: Tensor | None,
                uncond: Tensor | None, scale: float | None = None) -> Tensor:
        del uncond, scale
        return denoiser(x_t, t, cond)

"""FPS conditioning (paper Eq. 6): ``emb_fps = Linear(SiLU(Linear(PE(fps))))``.

Data sets such as UCF-101 mix frame rates, so the model is told the clip's FPS. The embedding has
the time-step embedding's form with its own weights, and is added to the time-step embedding. The
FPS is *not* a guided condition: the unconditional branch of classifier-free guidance still sees it
(paper Eq. 7, ``eps(z_t, t, f)``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import Conditioner
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_plugins.embeddings import SinusoidalEmbedding

__all__ = ["FPSConditioner"]


class FPSConditioner(Conditioner):
    """Frames-per-second embedding (Eq. 6), continuous values, added to the time-step embedding."""

    field: ClassVar[str] = "fps"

    class Config(ComponentConfig):
        emb_dim: int | None = Field(
            None, ge=1, description="embedding width; filled from the denoiser's emb_dim when unset")
        encoding_dim: int = Field(128, ge=2, description="width of the sinusoidal encoding PE(fps)")
        max_period: float = Field(10_000.0, gt=1.0, description="longest period of PE, in FPS units")
        dropout: float = Field(0.0, ge=0.0, le=1.0, description="probability of replacing the FPS by "
                               "null_fps in training (the paper never drops it)")
        null_fps: float = Field(0.0, description="the null FPS value (used only when dropout > 0)")
        default_fps: float | None = Field(
            None, gt=0.0, description="FPS used when sampling without one; unset = the caller must give it")

    def __init__(self, config: "FPSConditioner.Config | None" = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.emb_dim is None:
            raise ComponentError(
                "fps conditioner: emb_dim is not set. Set it to the denoiser's emb_dim, or build the "
                "system with build_system(), which fills it.")
        self.embedding = SinusoidalEmbedding(encoding_dim=self.config.encoding_dim,
                                             out_dim=self.config.emb_dim,
                                             max_period=self.config.max_period)

    @property
    def guided(self) -> bool:
        return False

    @property
    def dropout(self) -> float:
        return self.config.dropout

    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        return torch.full((batch_size,), self.config.null_fps, device=device)

    def default(self, batch_size: int, *, device: torch.device | str) -> Tensor | None:
        """The FPS used when sampling without one (``default_fps``), or None if there is none."""
        if self.config.default_fps is None:
            return None
        return torch.full((batch_size,), self.config.default_fps, device=device)

    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` FPS values (any real number) -> ``(B, emb_dim)``."""
        return self.embedding(values.float())

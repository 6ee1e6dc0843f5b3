"""The denoiser interface: the network of the reverse process, and what it predicts."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, Literal

from torch import Tensor, nn

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["Denoiser", "ModelFn", "PredictionType"]

PredictionType = Literal["epsilon", "x0", "v"]

ModelFn = Callable[[Tensor, Tensor], Tensor]
"""``model_fn(x_t, t) -> prediction``: the denoiser with its conditioning and guidance bound."""


class Denoiser(Configurable, nn.Module, abc.ABC):
    """The network of the reverse process.

    ``forward(x_t, t, emb)``: ``x_t`` ``(B, c, t, h, w)``, ``t`` ``(B,)`` integer time steps,
    ``emb`` ``(B, emb_dim)`` summed condition embeddings or ``None`` -> prediction of ``x_t``'s shape.
    The denoiser owns the time-step embedding; condition embeddings are added to it.

    A denoiser with :attr:`known_frames_rate` > 0 also takes ``known`` ``(B, c + 1, t, h, w)``: the
    clean latent of the frames that are given (zero elsewhere) and, as the last channel, a mask that
    is 1 on those frames (frame conditioning, as FDM and MCVD train it). Training gives such a
    denoiser a known prefix at that rate; long videos and continuations pass the known frames.
    """

    kind: ClassVar[str] = "denoiser"

    @property
    @abc.abstractmethod
    def prediction_type(self) -> PredictionType:
        """What the network predicts: ``"epsilon"`` (the paper), ``"x0"`` or ``"v"``."""

    @property
    @abc.abstractmethod
    def emb_dim(self) -> int:
        """Width ``D`` of the conditioning embedding ``forward`` accepts."""

    @property
    def known_frames_rate(self) -> float:
        """Fraction of training clips given a clean prefix of known latent frames (``forward(...,
        known=...)``); 0, the default: the denoiser takes no known frames."""
        return 0.0

    @abc.abstractmethod
    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        """Predict for ``x_t`` at time steps ``t`` given condition embedding ``emb``."""

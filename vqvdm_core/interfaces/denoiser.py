"""The denoiser interface: the network of the reverse process, and what it predicts."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, Literal

from torch import Tensor, nn

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["Denoiser", "ModelFn", "PredictionType"]

PredictionType = Literal["epsilon", "x0", "v", "velocity"]

ModelFn = Callable[[Tensor, Tensor], Tensor]
"""``model_fn(x_t, t) -> prediction``: the denoiser with its conditioning and guidance bound."""


class Denoiser(Configurable, nn.Module, abc.ABC):
    """The network of the reverse process.

    ``forward(x_t, t, emb=None, known=None)`` -> a prediction of ``x_t``'s shape, where

    * ``x_t`` ``(B, c, T, h, w)`` is the noisy latent;
    * ``t`` ``(B,)`` (or a scalar for every clip) is the time value the schedule gives the network,
      of the schedule's :attr:`~vqvdm_core.interfaces.NoiseSchedule.time_dtype` (DDPM: integer
      steps in ``[0, num_train_steps)``; flow: ``1000 t``, float; EDM: ``ln(sigma) / 4``, float);
      the denoiser owns its time embedding, which must take real values; ``x_t`` is what the
      schedule's :meth:`~vqvdm_core.interfaces.NoiseSchedule.model_input` made of the state
      (EDM's ``c_in`` scaling; the state itself elsewhere);
    * ``emb`` ``(B, emb_dim)`` is **all the conditions as one vector per clip**: the sum of every
      conditioner's embedding, each built at the width :attr:`emb_dim` (in the guidance's
      unconditional half the guided conditioners give their null embedding: ``emb`` is still a
      tensor). ``None`` only when the system has no conditioner; a denoiser treats it as zeros. How
      the vector enters the network is the denoiser's choice, and :attr:`emb_dim` is all the system
      asks of it: ``unet3d`` and ``dit3d`` add it to their time embedding (ADM, DiT), a wrapped peer
      network that takes its condition elsewhere (diffusers' Latte, cross-attending to it as one
      token: ``plugins/example-plugin``) passes it there;
    * ``known`` ``(B, c + 1, T, h, w)``, only for a denoiser with :attr:`known_frames_rate` > 0: the
      clean latent of the frames that are given (zero elsewhere) and, as the last channel, a mask
      that is 1 on those frames (frame conditioning, as FDM and MCVD train it). Training gives such a
      denoiser a known prefix at that rate; long videos and continuations pass the known frames. A
      denoiser with rate 0 is never passed ``known``.

    Training and sampling call the same ``forward``: there are no training-only arguments. Training
    differs only by ``module.training`` (dropout and the like) and by the known prefixes above; the
    condition dropout of classifier-free guidance is the conditioners' (they replace dropped values
    by their null value before embedding), never the denoiser's. A denoiser needing more (a
    frame-size rule, say) checks its inputs in ``forward`` and raises ``ValueError`` naming the rule.
    """

    kind: ClassVar[str] = "denoiser"

    @property
    @abc.abstractmethod
    def prediction_type(self) -> PredictionType:
        """What the network predicts: ``"epsilon"`` (the paper), ``"x0"``, ``"v"`` or ``"velocity"``
        (``eps - x0``, flow matching's target); :mod:`vqvdm_core.interfaces.gaussian_path`."""

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
    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None, known: Tensor | None = None) -> Tensor:
        """Predict for ``x_t`` at time values ``t`` given the condition embedding ``emb`` (and the
        known frames ``known``, with frame conditioning)."""

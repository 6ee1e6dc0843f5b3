"""The conditioner interface: one batch field to an embedding added to the time-step embedding."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor, nn

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["Conditioner"]


class Conditioner(Configurable, nn.Module, abc.ABC):
    """Turns one batch field into an embedding that is added to the time-step embedding.

    A conditioner owns its null value and the condition dropout of joint cond/uncond training.
    ``guided`` conditioners are the ``c`` that classifier-free guidance removes in the
    unconditional branch (the class); the others (FPS) stay in both branches (paper Eq. 7).
    """

    kind: ClassVar[str] = "conditioner"

    field: ClassVar[str]
    """The batch key this conditioner reads, e.g. ``"fps"``, ``"label"`` or a plug-in's own
    (``"motion"``): the data set provides it per clip, the latent cache and samples file keep it, and
    ``system.sample(conditions={field: ...})`` and metrics (``conditions``) take it by this name."""

    @property
    @abc.abstractmethod
    def guided(self) -> bool:
        """True if classifier-free guidance drops this condition in the unconditional branch."""

    @property
    @abc.abstractmethod
    def dropout(self) -> float:
        """Probability ``rho`` that one training example's condition is replaced by the null value."""

    @abc.abstractmethod
    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        """The null condition for ``batch_size`` examples (e.g. the null class index)."""

    @abc.abstractmethod
    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` field values -> ``(B, emb_dim)`` embedding."""

    def default(self, batch_size: int, *, device: torch.device | str) -> Tensor | None:
        """Values to use when the caller gives none at sampling time (None: the caller must give them)."""
        return None

    def drop(self, values: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Replace each value by the null value with probability ``dropout`` (training only)."""
        if self.dropout <= 0.0:
            return values
        draw_device = generator.device if generator is not None else values.device
        keep = torch.rand(values.shape[0], generator=generator, device=draw_device).to(values.device)
        keep = keep >= self.dropout
        null = self.null(values.shape[0], device=values.device).to(values.dtype)
        return torch.where(keep, values, null)

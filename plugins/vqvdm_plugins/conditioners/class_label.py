"""Class conditioning with a learned null class, for classifier-free guidance (paper Sec. 2.4).

One learned vector per class plus one for the null class (index ``num_classes``), added to the
time-step embedding. During training each example's class is replaced by the null class with
probability ``rho`` (``dropout``): the model learns Eq. 7 (unconditional) and Eq. 8 (conditional)
jointly. The paper uses ``rho = 0.5`` on UCF-101. Unlabelled clips (label ``-1``) always map to the
null class; a data set without classes (Sky Time-lapse, ``rho = 1``) simply has no class
conditioner.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import NO_LABEL, Conditioner
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.runtime import devices

__all__ = ["ClassConditioner"]


class ClassConditioner(Conditioner):
    """Learned class embedding plus a null class, dropped with probability rho for CFG."""

    field: ClassVar[str] = "label"

    class Config(ComponentConfig):
        num_classes: int | None = Field(
            None, ge=1, description="number of classes; filled from the data set when unset")
        emb_dim: int | None = Field(
            None, ge=1, description="embedding width; filled from the denoiser's emb_dim when unset")
        dropout: float = Field(0.5, ge=0.0, le=1.0,
                               description="rho: probability a training example becomes unconditional "
                               "(paper: 0.5 on UCF-101)")

    def __init__(self, config: "ClassConditioner.Config | None" = None, **overrides):
        super().__init__()
        self.config = cfg = self.resolve_config(config, overrides)
        missing = [name for name in ("num_classes", "emb_dim") if getattr(cfg, name) is None]
        if missing:
            raise ComponentError(
                f"class conditioner: {' and '.join(missing)} not set. Set num_classes to the data set's "
                "class count and emb_dim to the denoiser's emb_dim, or build the system with "
                "build_system(), which fills both.")
        self.num_classes: int = cfg.num_classes
        # Rows 0..num_classes-1 are the classes; row num_classes is the null class.
        # Default N(0, 1) init (as ADM): classes are told apart from the first step.
        self.embedding = nn.Embedding(cfg.num_classes + 1, cfg.emb_dim)

    @property
    def guided(self) -> bool:
        return True

    @property
    def dropout(self) -> float:
        return self.config.dropout

    @property
    def null_index(self) -> int:
        """Index of the null class (``num_classes``)."""
        return self.num_classes

    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        return torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)

    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` labels in ``[0, num_classes]`` or ``-1`` (= null) -> ``(B, emb_dim)``."""
        labels = values.long()
        # Checked where it costs nothing: on the CPU, and when sampling (labels a user gave). Training
        # on a GPU reads no label on the host (that would wait for the GPU every step); its labels come
        # from the latents file, whose range the denoiser stage checks once when it opens it.
        checked = devices.host_reads_are_free(labels.device) or not torch.is_grad_enabled() or not self.training
        if checked and labels.numel() and (int(labels.min()) < NO_LABEL or int(labels.max()) > self.num_classes):
            raise ValueError(
                f"class labels must lie in 0..{self.num_classes - 1} (or -1 / {self.num_classes} for "
                f"the null class); got values from {int(labels.min())} to {int(labels.max())}")
        labels = torch.where(labels == NO_LABEL, torch.full_like(labels, self.null_index), labels)
        return self.embedding(labels)

"""The training engine: one loop for every trainable component.

``Trainer(model, settings, out_dir=..., device=..., seed=...).fit(dataset)`` trains any
``nn.Module`` implementing :class:`vqvdm_core.interfaces.Trainable` -- several optimizers per step
(a GAN), gradient accumulation, clipping, EMA, mixed precision, ``torch.compile``, several
processes under ``torchrun``, atomic checkpoints with exact resume, ``metrics.jsonl``, progress
and loss curves. See ``docs/engine.md``.
"""

from __future__ import annotations

from vqvdm_core.engine.trainer import NonFiniteLossError, TrainResult, Trainer

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer"]

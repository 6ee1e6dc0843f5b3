"""One module per pipeline stage; each declares its :class:`~vqvdm_core.pipeline.stage.Stage` as
``STAGE`` and exposes ``run(ctx) -> info``. :data:`ORDER` lists them in pipeline order: a new stage
is one new module plus its place here."""

from __future__ import annotations

from vqvdm_core.pipeline.stage import Stage
from vqvdm_core.pipeline.stages import denoiser, evaluate, latents, sample, tokenizer

ORDER: tuple[Stage, ...] = tuple(m.STAGE for m in (tokenizer, latents, denoiser, sample, evaluate))
"""Every stage, in the order a run runs them (an upstream stage always comes first)."""

BY_NAME: dict[str, Stage] = {s.name: s for s in ORDER}

__all__ = ["BY_NAME", "ORDER", "Stage"]

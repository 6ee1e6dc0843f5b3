"""Latent Fréchet distance (``latent_fd``): how far generated latents lie from the training latents.

The quickstart's class and FPS targets no longer tell samplers or objectives apart at a few denoiser
calls; a distance between distributions does. This one needs no feature network: each clip's latent
``(c, t, h, w)`` (unscaled, as the latents stage caches them) becomes the pooled statistics

* for each channel and latent frame, the spatial mean and the spatial std (``c t`` each), and
* for each channel and pair of neighbouring latent frames, the spatial std of their difference
  (``c (t - 1)``: how much the clip moves),

``c (3 t - 1)`` numbers in all (44 for the quickstart's 4x4 latents), and the score is the Fréchet
distance between Gaussian fits of the generated and the real clips' vectors (:mod:`.frechet`).

It is comparable only between runs that share one tokenizer (the latent space is the tokenizer's),
and, as every Fréchet distance, only at equal clip counts. The metric takes latents, not video:
:attr:`~vqvdm_core.interfaces.Metric.inputs` is ``"latent"``, so the evaluate stage feeds it the
generated latents before decoding and the cached training latents as the real set.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import Metric
from vqvdm_core.interfaces.configurable import ComponentConfig

from .frechet import fit_gaussian, frechet_distance

__all__ = ["LatentFD", "pooled_statistics"]


def pooled_statistics(latent: Tensor) -> Tensor:
    """``(B, c, t, h, w)`` latents -> ``(B, c (3 t - 1))`` float64: the spatial mean and std of
    every channel and frame, then the spatial std of every frame-to-frame difference."""
    if latent.ndim != 5:
        raise UserError(f"latent_fd takes latents (B, c, t, h, w), got shape {tuple(latent.shape)}")
    z = latent.detach().double()
    mean = z.mean(dim=(3, 4))                              # (B, c, t)
    std = z.std(dim=(3, 4), unbiased=False)                # (B, c, t)
    motion = (z[:, :, 1:] - z[:, :, :-1]).std(dim=(3, 4), unbiased=False)  # (B, c, t - 1)
    return torch.cat([mean.flatten(1), std.flatten(1), motion.flatten(1)], dim=1)


class LatentFD(Metric):
    """Fréchet distance between generated and training latents' pooled per-clip statistics."""

    inputs: ClassVar[str] = "latent"

    class Config(ComponentConfig):
        min_clips: int = Field(16, ge=2, description="refuse to score fewer clips than this on either side "
                               "(a covariance of 44 numbers from a handful of clips is noise)")

    def __init__(self, config: "LatentFD.Config | None" = None, **overrides: Any):
        self.config = self.resolve_config(config, overrides)
        self.reset()

    def reset(self) -> None:
        self._real: list[Tensor] = []
        self._fake: list[Tensor] = []

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if real is not None:
            self._real.append(pooled_statistics(real).cpu())
        if fake is not None:
            self._fake.append(pooled_statistics(fake).cpu())

    def compute(self) -> dict[str, float]:
        counts = {side: sum(len(x) for x in parts) for side, parts in (("real", self._real), ("fake", self._fake))}
        for side, count in counts.items():
            if count < self.config.min_clips:
                raise UserError(f"latent_fd has {count} {side} clips, fewer than min_clips ({self.config.min_clips})")
        real, fake = torch.cat(self._real), torch.cat(self._fake)
        if real.shape[1] != fake.shape[1]:
            raise UserError(f"latent_fd: real and generated latents have different shapes ({real.shape[1]} and "
                            f"{fake.shape[1]} statistics per clip); they must come from one tokenizer")
        return {"latent_fd": frechet_distance(fit_gaussian(real), fit_gaussian(fake))}

    def protocol(self) -> dict[str, Any]:
        return {**self.config.model_dump(), "features": "per channel and latent frame: spatial mean, spatial std; "
                "per channel and neighbouring frame pair: spatial std of the difference (unscaled latents)",
                "covariance": "unbiased (N - 1)", "comparable": "within one tokenizer, at equal clip counts"}

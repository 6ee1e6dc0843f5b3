"""Temporal flicker: how much a clip changes from one frame to the next.

The paper (VQ-VDM, Kaji & Yanai 2023) reports that TATS' samples oscillate in time while its own do
not. This metric measures exactly that, cheaply and without any feature network: the mean absolute
difference between frames ``stride`` apart, over every pixel and channel of every clip,

    order 1:  mean |x[t+s] - x[t]|                    all temporal change, motion included
    order 2:  mean |x[t+s] - 2 x[t] + x[t-s]|         change of the change: flicker and
                                                       back-and-forth oscillation, not steady motion

in units of the full pixel range (pixels mapped from [-1, 1] to [0, 1]), so 0 is a still clip and
1 the largest possible order-1 change. A number alone says little (a static video scores 0); what
matters is ``ratio`` = generated / real: near 1 the generated clips move as much as real ones, well
above 1 they flicker.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import Metric
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["TemporalFlicker", "frame_differences"]


def frame_differences(video: Tensor, *, order: int, stride: int) -> Tensor:
    """Absolute temporal finite differences of ``(B, C, T, H, W)`` video in [-1, 1], in [0, 1] units.

    Returns ``(B, C, T - order * stride, H, W)``.
    """
    if video.dim() != 5:
        raise ValueError(f"temporal_flicker expects video of shape (B, C, T, H, W), got {tuple(video.shape)}")
    frames = video.shape[2]
    if frames <= order * stride:
        raise ValueError(
            f"temporal_flicker with order={order}, stride={stride} needs more than {order * stride} "
            f"frames per clip, got {frames}"
        )
    s = stride
    if order == 1:
        diff = video[:, :, s:] - video[:, :, :-s]
    else:
        diff = video[:, :, 2 * s:] - 2 * video[:, :, s:-s] + video[:, :, : -2 * s]
    return diff.abs() * 0.5  # [-1, 1] pixel units -> [0, 1] units


class TemporalFlicker(Metric):
    """Temporal flicker: mean absolute frame-to-frame change of generated and real clips, and their ratio."""

    class Config(ComponentConfig):
        order: Literal[1, 2] = Field(
            1, description="1: |x[t+s] - x[t]| (all change); 2: |x[t+s] - 2x[t] + x[t-s]| (oscillation)"
        )
        stride: int = Field(1, ge=1, description="frames between the compared frames")
        real: bool = Field(
            True, description="also measure the real clips and report the ratio generated / real"
        )

    requires_real = True

    def __init__(self, config: "TemporalFlicker.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        # The evaluate stage feeds real clips only to metrics that ask for them.
        self.requires_real = self.config.real
        self.reset()

    def reset(self) -> None:
        # name -> [sum of |differences| (float64), number of differences]
        self._totals: dict[str, list[float]] = {"fake": [0.0, 0.0], "real": [0.0, 0.0]}

    def _add(self, which: str, video: Tensor) -> None:
        diff = frame_differences(video.detach(), order=self.config.order, stride=self.config.stride)
        total = self._totals[which]
        total[0] += float(diff.sum(dtype=torch.float64))
        total[1] += diff.numel()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        """Accumulate ``(B, C, T, H, W)`` clips in [-1, 1]; labels and FPS are not used."""
        if fake is not None:
            self._add("fake", fake)
        if real is not None and self.config.real:
            self._add("real", real)

    def compute(self) -> dict[str, float]:
        """``fake`` (and, when real clips were given, ``real`` and ``ratio`` = fake / real)."""
        fake_sum, fake_n = self._totals["fake"]
        if fake_n == 0:
            raise ValueError("temporal_flicker: no generated clips were given (update(fake=...))")
        out = {"fake": fake_sum / fake_n}
        real_sum, real_n = self._totals["real"]
        if real_n:
            out["real"] = real_sum / real_n
            if out["real"] > 0:  # a perfectly still real set has no meaningful ratio
                out["ratio"] = out["fake"] / out["real"]
        return out

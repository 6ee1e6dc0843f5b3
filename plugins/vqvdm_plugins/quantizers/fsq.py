"""``fsq``: finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each latent channel ``i`` is bounded to ``L_i`` values and rounded; the codebook is the implicit grid of
``prod(L_i)`` points, so there is nothing to learn and, in the paper, no auxiliary loss (the grid can
still go unused when the encoder saturates the bound: see the wall below). As in the paper's listing
(its Appendix A.1):

    half_l = (L - 1) (1 - eps) / 2,   offset = 0.5 if L is even else 0,   shift = tan(offset / half_l)
    bound(z) = tanh(z + shift) half_l - offset                  # values in (-L/2, L/2) around the grid
    z_hat = round_ste(bound(z)) / (L // 2)                      # straight-through rounding, in [-1, 1]

(The listing's ``tan`` is close to ``atanh`` for the small ratios of 5 or more levels, where the latter
would centre the grid exactly; unlike ``atanh`` it stays finite for ``L = 2``, whose ratio exceeds 1.)
An odd ``L`` gives the integers ``-(L-1)/2 .. (L-1)/2``; an even one ``-L/2 .. L/2 - 1`` (the offset
keeps the grid symmetric in number, one more value below zero). The code index of a position is the
mixed-radix number of its per-channel levels. ``levels: [8, 5, 5, 5]`` is about 10 bits per
position (1000 codes), the paper's recommendation for a 2^10 codebook.

**Beyond the paper: a wall against saturation.** The bound's gradient ``tanh'(z)`` vanishes as ``|z|``
grows, but Adam rescales small gradients of a steady sign to full-size steps: once an encoder output
with no normalisation in front of it (the quickstart's lean encoder) is pushed outwards, it runs away.
Measured on the quickstart (docs/results.md): within 50 steps ``|z|`` went from 0.02 to ~100, 99 % of
the values sat in the flat of the ``tanh`` and the held-out clips used 9 of the 1000 codes, every
channel stuck at its two ends (6 dB below ``vq``). The training loss therefore gains
``saturation_weight * mean(relu(|z| - saturation_limit)^2)``: nothing inside the limit, where
``tanh`` is live (at the default 2, ``tanh`` = 0.964 and every level of a channel of up to 28 values is
reached inside it), and a wall beyond it that Adam cannot outgrow. ``saturation_weight: 0`` is the
paper's FSQ exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from einops import rearrange
from pydantic import Field, field_validator
from torch import Tensor

from vqvdm_core.interfaces import ComponentConfig, Quantized, Quantizer
from vqvdm_plugins.quantizers.code_counts import code_counts

__all__ = ["FSQ"]

EPS = 1e-3
"""The paper's margin: bounded values stay strictly inside the outer rounding intervals."""


class FSQ(Quantizer):
    """Bounded, rounded channels on an implicit grid of ``prod(levels)`` codes: ``(B, len(levels), t, h, w)``."""

    class Config(ComponentConfig):
        levels: list[int] = Field([8, 5, 5, 5], min_length=1, description="values per latent channel "
                                  "(one entry per channel; the paper: [8, 5, 5, 5] for ~2^10 codes)")

        @field_validator("levels")
        @classmethod
        def _at_least_two(cls, levels: list[int]) -> list[int]:
            small = [lv for lv in levels if lv < 2]
            if small:
                raise ValueError(f"every level must be at least 2 (a channel of one value carries nothing), "
                                 f"got {levels}")
            return levels

        saturation_weight: float = Field(1.0, ge=0, description="weight of the loss on encoder values beyond "
                                         "saturation_limit, where the tanh bound is flat (beyond the paper; 0: "
                                         "the paper's FSQ, no loss at all)")
        saturation_limit: float = Field(2.0, gt=0, description="|z| beyond which the saturation loss acts (at 2 "
                                        "the tanh is at 0.964: every level of up to 28 is reached inside)")

    config: Config

    def __init__(self, config: "FSQ.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        levels = torch.tensor(self.config.levels, dtype=torch.float32)
        # Non-persistent: derived from the config, so the state dict (and every checkpoint) has none.
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([torch.ones(1), levels[:-1]]), 0), persistent=False)
        self.num_codes = int(math.prod(self.config.levels))

    @property
    def latent_channels(self) -> int:
        return len(self.config.levels)

    @property
    def bits_per_position(self) -> float:
        return math.log2(self.num_codes)

    def _view(self, buffer: Tensor) -> Tensor:
        return rearrange(buffer, "d -> 1 d 1 1 1")

    def bound(self, z: Tensor) -> Tensor:
        """``z`` squashed into ``(-L/2, L/2)`` per channel, so that rounding lands on the grid."""
        levels = self._view(self.levels)
        half_l = (levels - 1) * (1 - EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.tan(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _check(self, z: Tensor) -> None:
        if z.shape[1] != self.latent_channels:
            raise ValueError(f"fsq: the latent has {z.shape[1]} channels but levels {self.config.levels} "
                             f"quantize {self.latent_channels}")

    def quantize(self, z: Tensor) -> Tensor:
        """``z`` on the grid, normalised to ``[-1, 1]`` (each channel divided by ``L // 2``)."""
        self._check(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            bounded = self.bound(z.float())
            rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through round
            return (rounded / self._view(torch.div(self.levels, 2, rounding_mode="floor"))).to(z.dtype)

    def indices_of(self, latent: Tensor) -> Tensor:
        """``(B, t, h, w)`` code index of a latent on the grid (mixed radix over the channels)."""
        half_width = self._view(torch.div(self.levels, 2, rounding_mode="floor"))
        digits = torch.round(latent.float() * half_width) + half_width  # 0 .. L - 1 per channel
        return (digits * self._view(self.basis)).sum(1).long()

    def forward(self, z: Tensor, *, update: bool = False) -> Quantized:
        latent = self.quantize(z)
        indices = self.indices_of(latent.detach())
        with torch.no_grad():
            counts = code_counts(indices, self.num_codes)
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            codes_in_use = (counts > 0).float().mean()
            saturated = (z.detach().abs() > self.config.saturation_limit).float().mean()
        return Quantized(latent=latent, loss=self.saturation_loss(z), indices=indices,
                         stats={"perplexity": perplexity, "codes_in_use": codes_in_use, "saturated": saturated})

    def saturation_loss(self, z: Tensor) -> Tensor:
        """``saturation_weight * mean(relu(|z| - saturation_limit)^2)`` in training (a zero otherwise)."""
        if not self.training or self.config.saturation_weight == 0:
            return torch.zeros((), device=z.device)
        excess = torch.relu(z.float().abs() - self.config.saturation_limit)
        return self.config.saturation_weight * excess.pow(2).mean()

    @torch.no_grad()
    def snap(self, latent: Tensor) -> Tensor:
        """A latent (e.g. a diffusion sample, in the ``[-1, 1]`` scale of the grid) on its nearest grid point."""
        self._check(latent)
        levels = self._view(self.levels)
        half_width = self._view(torch.div(self.levels, 2, rounding_mode="floor"))
        low = -half_width
        high = levels - 1 - half_width
        steps = torch.round(latent.float() * half_width).clamp(min=low, max=high)
        return (steps / half_width).to(latent.dtype)

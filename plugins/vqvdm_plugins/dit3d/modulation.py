"""adaLN-Zero (DiT, Peebles & Xie 2023, Sec. 3.2): the conditioning vector regresses a shift, a
scale and a gate for each sub-layer of a block; the regression starts at zero, so every gate is 0
and a new block is the identity (its residual branches add nothing)."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

__all__ = ["AdaLNZero", "modulate"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x * (1 + scale) + shift``, the adaptive layer norm's affine part (DiT's form: a zero scale
    leaves the normalised ``x`` unchanged)."""
    return x * (1 + scale) + shift


class AdaLNZero(nn.Module):
    """``SiLU -> Linear``: the condition ``(B, width)`` -> ``chunks`` vectors ``(chunks, B, 1, 1,
    width)``, broadcast over a video's ``(B, T, S, width)`` tokens. Zero-initialised."""

    def __init__(self, *, width: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.act = nn.SiLU()
        self.linear = nn.Linear(width, chunks * width)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, cond: Tensor) -> Tensor:
        return rearrange(self.linear(self.act(cond)), "b (n d) -> n b 1 1 d", n=self.chunks)

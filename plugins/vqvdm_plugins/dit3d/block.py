"""The DiT block with adaLN-Zero (Peebles & Xie 2023, Fig. 3), over a video's tokens.

One block attends along each of its ``axes`` in turn, then runs the MLP; every sub-layer is
pre-normalised by a parameter-free LayerNorm, modulated by a shift and scale regressed from the
condition, and gated by a regressed gate (zero at initialisation). Latte's variants are different
orders of such blocks (``dit.py``): variant 1 alternates ``("spatial",)`` and ``("temporal",)``
blocks, variant 3 uses ``("spatial", "temporal")`` in every block.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vqvdm_plugins.dit3d.attention import Axis, AxisAttention
from vqvdm_plugins.dit3d.modulation import AdaLNZero, modulate

__all__ = ["DiTBlock", "FeedForward"]


class FeedForward(nn.Sequential):
    """``Linear -> GELU (tanh approximation) -> Linear``, hidden width ``mlp_ratio * width`` (DiT)."""

    def __init__(self, *, width: int, hidden: int):
        super().__init__(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))


class DiTBlock(nn.Module):
    """``(B, T, S, width)`` tokens and a ``(B, width)`` condition -> tokens of the same shape."""

    def __init__(self, *, width: int, heads: int, axes: Sequence[Axis], mlp_ratio: float = 4.0,
                 causal: bool = False, rope: bool = False):
        super().__init__()
        self.axes = tuple(axes)
        self.attention = nn.ModuleList(
            AxisAttention(width=width, heads=heads, axis=axis, causal=causal, rope=rope) for axis in self.axes)
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)  # no parameters: shared
        self.mlp = FeedForward(width=width, hidden=int(width * mlp_ratio))
        # A (shift, scale, gate) triple per attention and one for the MLP.
        self.modulation = AdaLNZero(width=width, chunks=3 * (len(self.axes) + 1))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        # DiT's order, sub-layer by sub-layer: (shift, scale, gate), each (B, 1, 1, width).
        triples = self.modulation(cond).unflatten(0, (-1, 3))  # (sub-layers, 3, B, 1, 1, width)
        for attention, (shift, scale, gate) in zip(self.attention, triples):
            x = x + gate * attention(modulate(self.norm(x), shift, scale))
        shift, scale, gate = triples[-1]
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))

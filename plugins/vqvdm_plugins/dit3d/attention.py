"""Self-attention of a video's tokens along one axis: within each frame (spatial) or along time at
each patch position (temporal, optionally causal), as Latte factorises it.

Tokens are kept as ``(B, T, S, width)`` (``S`` patches per frame). The spatial attention folds them
as ``"b t s d -> (b t) s d"``, the temporal one as ``"b t s d -> (b s) t d"``; both run the fused
``scaled_dot_product_attention`` (:func:`~vqvdm_plugins.batched_attention.batched_attention`). A causal temporal attention never lets a (temporal) patch attend to
a later one: with temporal patch size 1, no latent frame sees a later frame (the paper's causal
U-Net attention, Sec. 2.3); the spatial attention never mixes frames, so causality holds for the
whole network.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from vqvdm_plugins.batched_attention import batched_attention
from vqvdm_plugins.rotary import rotary_embedding

__all__ = ["AxisAttention", "attend"]

Axis = Literal["spatial", "temporal"]

SHORT = 32
"""Sequences up to this length are attended with explicit batched matmuls when no gradient is
needed on the CPU (sampling): the fused CPU kernel's per-sequence blocking dominates there (measured,
AMD EPYC, 2 threads, fp32, 6 heads of 32: 16 tokens x 256 sequences 10.3 ms fused vs 3.3 ms
explicit, 8 causal tokens x 512 sequences 18.2 vs 2.4 ms); training keeps the fused kernel, whose
backward is the faster one (33.8 vs 52.4 ms, 58.1 vs 103.4 ms)."""


def attend(q: Tensor, k: Tensor, v: Tensor, *, causal: bool) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``(N, heads, L, d)`` (``causal``: no query attends to a
    later key): the fused ``scaled_dot_product_attention``, or the same sums as explicit matmuls for
    short sequences when sampling on the CPU."""
    length = q.shape[-2]
    if torch.is_grad_enabled() or q.device.type != "cpu" or length > SHORT:
        return batched_attention(q, k, v, causal=causal)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (N, heads, L, L)
    if causal:
        later = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(later, float("-inf"))
    return scores.softmax(dim=-1) @ v


class AxisAttention(nn.Module):
    """Multi-head self-attention of ``(B, T, S, width)`` tokens along ``axis``; same shape out.

    ``rope``: rotary positions on queries and keys along the attended axis (temporal only: the
    spatial positions are the fixed sin-cos table added to the patch embeddings, as in DiT).
    """

    def __init__(self, *, width: int, heads: int, axis: Axis, causal: bool = False, rope: bool = False):
        super().__init__()
        if axis not in ("spatial", "temporal"):
            raise ValueError(f"axis must be 'spatial' or 'temporal', got {axis!r}")
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        if rope and (width // heads) % 2:
            raise ValueError(f"rotary positions need an even head width, got {width // heads}")
        self.axis, self.heads = axis, heads
        self.causal = causal and axis == "temporal"
        self.rope = rope and axis == "temporal"
        self.to_qkv = nn.Linear(width, 3 * width)
        self.to_out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t, s, _ = x.shape
        pattern = "b t s d -> (b t) s d" if self.axis == "spatial" else "b t s d -> (b s) t d"
        q, k, v = rearrange(self.to_qkv(rearrange(x, pattern)), "n l (qkv h d) -> qkv n h l d",
                            qkv=3, h=self.heads)  # each (N, heads, L, d)
        if self.rope:
            q, k = rotary_embedding(q), rotary_embedding(k)
        out = self.to_out(rearrange(attend(q, k, v, causal=self.causal), "n h l d -> n l (h d)"))  # (N, L, width)
        if self.axis == "spatial":
            return rearrange(out, "(b t) s d -> b t s d", b=b)
        return rearrange(out, "(b s) t d -> b t s d", b=b)

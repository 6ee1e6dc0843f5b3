"""Spatial self-attention: every frame attends over its own ``H x W`` positions, never across frames.

The frames are folded into the batch (``"b c t h w -> (b t) (h w) c"``), so frame ``i``'s output
depends on frame ``i`` alone; time is mixed by the convolutions and the temporal attention.
Position within a frame needs no encoding: the surrounding 3x3 convolutions already carry it.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["SpatialAttention"]


class SpatialAttention(nn.Module):
    """Pre-norm (LayerNorm per token) multi-head self-attention within each frame, added to its input.

    ``(B, C, T, H, W)`` -> same shape. The output projection starts at zero (ADM), so a new block
    is the identity.
    """

    def __init__(self, *, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)  # per token: statistics never mix frames or positions
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        tokens = self.norm(rearrange(x, "b c t h w -> (b t) (h w) c"))
        # One matmul for q, k, v; the split into heads is a strided view (last axis stays dense).
        q, k, v = rearrange(self.to_qkv(tokens), "n l (qkv heads d) -> qkv n heads l d",
                            qkv=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B*T, heads, H*W, d)
        out = self.to_out(rearrange(out, "n heads l d -> n l (heads d)"))
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", b=b, t=t, h=h, w=w)

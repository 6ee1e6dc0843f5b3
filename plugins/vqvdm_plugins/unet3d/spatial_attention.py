"""Spatial self-attention: every frame attends over its own ``H x W`` positions, never across frames.

The frames are folded into the batch (``"b c t h w -> (b t) (h w) c"``), so frame ``i``'s output
depends on frame ``i`` alone; time is mixed by the convolutions and the temporal attention.
Position within a frame needs no encoding: the surrounding 3x3 convolutions already carry it.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from vqvdm_plugins.batched_attention import batched_attention
from vqvdm_plugins.unet3d.attention import TokenAttention

__all__ = ["SpatialAttention"]


class SpatialAttention(TokenAttention):
    """Pre-norm (LayerNorm per token) multi-head self-attention within each frame, added to its input.

    ``(B, C, T, H, W)`` -> same shape. The output projection starts at zero (ADM), so a new block
    is the identity.
    """

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        q, k, v = self.split_heads(self.norm(rearrange(x, "b c t h w -> (b t) (h w) c")))
        out = self.merge_heads(batched_attention(q, k, v))  # attention: (B*T, heads, H*W, d)
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", b=b, t=t, h=h, w=w)

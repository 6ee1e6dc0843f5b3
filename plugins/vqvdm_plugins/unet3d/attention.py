"""What the spatial and the temporal attention share: pre-norm, the fused q/k/v projection, the
split into heads and the zero-initialised output projection. They differ only in how the video is
folded into token sequences (per frame, or per position along time) and in masking/position."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

__all__ = ["TokenAttention"]


class TokenAttention(nn.Module):
    """Pre-norm multi-head self-attention over ``(N, L, C)`` token sequences; subclasses fold the
    video into tokens and back, and run the attention itself.

    The norm is a LayerNorm per token: its statistics never mix frames or positions. The output
    projection starts at zero (ADM), so a new block is the identity.
    """

    def __init__(self, *, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def split_heads(self, tokens: Tensor) -> Tensor:
        """Normalised tokens ``(N, L, C)`` -> ``(3, N, heads, L, d)``, unpacked as ``q, k, v``: one
        matmul for the three; the split into heads is a strided view (the last axis stays dense)."""
        return rearrange(self.to_qkv(tokens), "n l (qkv heads d) -> qkv n heads l d", qkv=3, heads=self.heads)

    def merge_heads(self, out: Tensor) -> Tensor:
        """Attention output ``(N, heads, L, d)`` -> projected tokens ``(N, L, C)``."""
        return self.to_out(rearrange(out, "n heads l d -> n l (heads d)"))

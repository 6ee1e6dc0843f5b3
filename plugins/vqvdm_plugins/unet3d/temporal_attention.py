"""Causal temporal self-attention: every spatial position attends over time, never to later frames.

Paper Sec. 2.3: the axes are swapped so that each of the ``B x H x W`` positions is a batch item
holding a length-``T`` sequence (``"b c t h w -> (b h w) t c"``), and a causal mask stops a frame
from attending to the frames after it.

Temporal position: rotary position embedding (RoPE, Su et al. 2021) on queries and keys. The paper
does not say which encoding it uses; we chose RoPE because

* it is *relative*: the score between frames ``i`` and ``j`` depends on ``i - j`` only, which suits
  clips cut at random offsets from longer videos (frame 0 of a clip is not a special moment);
* it has no parameters and no additive bias tensor, so ``scaled_dot_product_attention`` keeps
  its fused ``is_causal`` kernel (a learned relative bias, as in VDM, needs an explicit mask);
* it is defined for any ``T``, so a model trained on 4 latent frames still runs on more.

The pre-normalisation is a LayerNorm over channels of each token, not a GroupNorm over
``(C/g, T, H, W)``: GroupNorm statistics would carry information from later frames into earlier
ones and break causality.

A causal mask alone already leaks absolute position (a frame can count how many frames it sees),
so ``temporal_position="none"`` is kept as an ablation rather than as a broken model.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from vqvdm_plugins.batched_attention import batched_attention
from vqvdm_plugins.rotary import rotary_embedding
from vqvdm_plugins.unet3d.attention import TokenAttention

__all__ = ["TemporalAttention", "rotary_embedding"]


class TemporalAttention(TokenAttention):
    """Pre-norm (LayerNorm per token) causal multi-head self-attention along time at every position.

    ``(B, C, T, H, W)`` -> same shape; output frame ``i`` depends on input frames ``<= i`` (at the
    same position) only. The output projection starts at zero (ADM), so a new block is the identity.
    """

    def __init__(self, *, channels: int, heads: int, position: str = "rope"):
        if position not in ("rope", "none"):
            raise ValueError(f"temporal position must be 'rope' or 'none', got {position!r}")
        super().__init__(channels=channels, heads=heads)
        self.position = position

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        q, k, v = self.split_heads(self.norm(rearrange(x, "b c t h w -> (b h w) t c")))
        if self.position == "rope":
            q, k = rotary_embedding(q), rotary_embedding(k)
        out = self.merge_heads(batched_attention(q, k, v, causal=True))  # (B*H*W, heads, T, d)
        return x + rearrange(out, "(b h w) t c -> b c t h w", b=b, h=h, w=w)

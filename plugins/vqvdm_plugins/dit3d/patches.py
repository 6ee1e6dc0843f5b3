"""Latent patches: a video latent cut into space-time patches (tokens), and the tokens put back.

DiT (Peebles & Xie 2023) patchifies an image latent with a strided convolution of kernel = stride
= ``p``; Latte (Ma et al. 2024) does the same per frame. A temporal patch size ``pt`` > 1 folds
``pt`` latent frames into one token as well (Latte's "compression frame patch embedding").
"""

from __future__ import annotations

import math

from einops import rearrange
from torch import Tensor, nn

__all__ = ["PatchEmbed", "unpatchify"]


class PatchEmbed(nn.Module):
    """``(B, c, T, H, W)`` -> tokens ``(B, T/pt, (H/p)(W/p), width)``: one linear map of each
    ``c x pt x p x p`` patch (a convolution with kernel = stride = patch)."""

    def __init__(self, *, in_channels: int, width: int, patch_size: int, temporal_patch_size: int):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, width, kernel_size=(temporal_patch_size, patch_size, patch_size),
                              stride=(temporal_patch_size, patch_size, patch_size))
        # DiT's initialisation: the convolution as the linear map it is (Xavier on the flattened kernel).
        fan_in = in_channels * temporal_patch_size * patch_size * patch_size
        bound = math.sqrt(6.0 / (fan_in + width))
        nn.init.uniform_(self.proj.weight, -bound, bound)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.proj(x), "b d t h w -> b t (h w) d")


def unpatchify(tokens: Tensor, *, channels: int, patch_size: int, temporal_patch_size: int, height: int) -> Tensor:
    """Tokens ``(B, T', S, pt * p * p * c)`` -> ``(B, c, T' pt, H, W)`` for ``H = height`` (``S =
    (H/p)(W/p)``): each token's values fill its patch, ordered frame, row, column, channel (DiT's
    ``"nhwpqc"``; the output layer learns whatever order it is given)."""
    return rearrange(tokens, "b t (h w) (pt p q c) -> b c (t pt) (h p) (w q)", h=height // patch_size,
                     pt=temporal_patch_size, p=patch_size, q=patch_size, c=channels)

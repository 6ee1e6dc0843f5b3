"""Down- and upsampling between U-Net levels: frame size halves or doubles, frame count is kept.

Paper Sec. 2.3: downsampling "compresses the frame size to half", upsampling "upsamples by a factor
of two". The latent has only 4 frames, so time is never resampled. Both use a per-frame 3x3
convolution (kernel ``1x3x3``): time is mixed by the residual blocks and the temporal attention.
Channel changes happen in the residual blocks of each level, not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Downsample", "Upsample", "nearest_upsample_2x"]


class Downsample(nn.Module):
    """``(B, C, T, H, W)`` -> ``(B, C, T, H/2, W/2)`` with a stride-2 convolution per frame."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def nearest_upsample_2x(x: Tensor) -> Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, T, 2H, 2W)``, every pixel repeated 2x2: the same values as
    ``F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")``.

    A channels-last input is repeated as a broadcast over its view ``(B, T, H, W, C)``, so the
    result (and its gradient) stay channels-last; other layouts use ``F.interpolate``.
    """
    if not x.is_contiguous(memory_format=torch.channels_last_3d):
        return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
    b, c, t, h, w = x.shape
    tokens = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C), a view
    up = tokens[:, :, :, None, :, None, :].expand(b, t, h, 2, w, 2, c).reshape(b, t, 2 * h, 2 * w, c)
    return up.permute(0, 4, 1, 2, 3)


class Upsample(nn.Module):
    """``(B, C, T, H, W)`` -> ``(B, C, T, 2H, 2W)``: nearest-neighbour, then a 3x3 convolution per frame."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nearest_upsample_2x(x))

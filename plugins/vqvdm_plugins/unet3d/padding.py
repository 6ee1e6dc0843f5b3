"""A 3D convolution whose temporal padding repeats the edge frames (paper Sec. 2.3).

The paper pads Conv3D in time by replication, "a copy of the real frame rather than zero padding"
(after TATS): a clip's first and last frames are not pushed towards black. Space keeps ordinary
zero padding, which the convolution applies itself without an extra copy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TemporalReplicateConv3d"]


class TemporalReplicateConv3d(nn.Conv3d):
    """``nn.Conv3d`` with "same" padding: replicate in time, zeros in space (odd kernels only)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: tuple[int, int, int] = (3, 3, 3),
                 bias: bool = True):
        kt, kh, kw = kernel_size
        if not (kt % 2 and kh % 2 and kw % 2):
            raise ValueError(f"kernel_size must be odd in every axis for 'same' padding, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=(0, kh // 2, kw // 2), bias=bias)
        self.time_pad = kt // 2

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)``."""
        if self.time_pad:
            # F.pad's tuple runs from the last axis: (W, W, H, H, T, T).
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)

"""A 3D convolution that pads time by replicating the edge frames (paper Sec. 2.2, after TATS).

The paper pads the VQGAN's Conv3D layers in time by replication: "a copy of the real frame rather
than zero padding". A clip's first and last frames are then never blended with black frames that do
not exist. The paper says nothing about space; ``spatial_padding`` picks zeros (LDM), replicate
(TATS, our default) or reflect.

Padding is "same"-style for any stride: an axis of size ``n`` with kernel ``k`` and stride ``s`` gets
``k - s`` padded positions (one more before than after when odd, as in TATS), so when ``s`` divides
``n`` the output has ``n / s`` positions.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpatialPadding", "TemporalReplicateConv3d", "same_padding"]

SpatialPadding = Literal["zeros", "replicate", "reflect"]


def same_padding(kernel: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` padding that makes a stride-``s`` convolution map ``n`` to ``n / s``."""
    if kernel < stride:
        raise ValueError(f"kernel {kernel} is smaller than stride {stride}: positions would be skipped")
    total = kernel - stride
    return total - total // 2, total // 2


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


class TemporalReplicateConv3d(nn.Conv3d):
    """``nn.Conv3d`` with "same" padding: replicate in time, ``spatial_padding`` in height and width.

    ``(B, C_in, T, H, W)`` -> ``(B, C_out, T / s_t, H / s_h, W / s_w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *,
                 kernel_size: int | tuple[int, int, int] = 3,
                 stride: int | tuple[int, int, int] = 1,
                 spatial_padding: SpatialPadding = "zeros", bias: bool = True):
        kernel, strides = _triple(kernel_size), _triple(stride)
        pads = [same_padding(k, s) for k, s in zip(kernel, strides)]
        (t0, t1), (h0, h1), (w0, w1) = pads
        # Symmetric zero padding in space is done by the convolution itself (no extra copy).
        conv_pads_space = spatial_padding == "zeros" and h0 == h1 and w0 == w1
        super().__init__(in_channels, out_channels, kernel, stride=strides, bias=bias,
                         padding=(0, h0, w0) if conv_pads_space else 0)
        self.spatial_padding = spatial_padding
        self.time_pad = (t0, t1)
        # F.pad's tuple runs from the last axis: (W, W, H, H, T, T).
        self.space_pad = (0, 0, 0, 0) if conv_pads_space else (w0, w1, h0, h1)

    def forward(self, x: Tensor) -> Tensor:
        t0, t1 = self.time_pad
        w0, w1, h0, h1 = self.space_pad
        has_space_pad = any(self.space_pad)
        if self.spatial_padding == "replicate" and has_space_pad:
            x = F.pad(x, (w0, w1, h0, h1, t0, t1), mode="replicate")  # one copy for all axes
        else:
            if t0 or t1:
                x = F.pad(x, (0, 0, 0, 0, t0, t1), mode="replicate")
            if has_space_pad:
                mode = "constant" if self.spatial_padding == "zeros" else self.spatial_padding
                x = F.pad(x, (w0, w1, h0, h1, 0, 0), mode=mode)
        return super().forward(x)

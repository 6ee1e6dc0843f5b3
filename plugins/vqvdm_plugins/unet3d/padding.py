"""A 3D convolution whose temporal padding repeats the edge frames (paper Sec. 2.3).

The paper pads Conv3D in time by replication, "a copy of the real frame rather than zero padding"
(after TATS): a clip's first and last frames are not pushed towards black. Space keeps ordinary
zero padding, which the convolution applies itself without an extra copy.

On the CPU, where a layer has more output channels than output positions (the deepest level at
small batch), the convolution runs as one GEMM (:mod:`.conv_gemm`); the result is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvdm_plugins.unet3d.conv_gemm import conv3d_gemm, prefers_gemm

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

    def forward(self, x: Tensor, extra_bias: Tensor | None = None) -> Tensor:
        """``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)``; ``extra_bias`` ``(B, C_out)``, if
        given, is added per example (the residual block's embedding) without another temporary."""
        b, _, t, h, w = x.shape
        if self.time_pad:
            # F.pad's tuple runs from the last axis: (W, W, H, H, T, T).
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        if prefers_gemm(x, self.weight, out_positions=b * t * h * w):
            return conv3d_gemm(x, self.weight, self.bias, padding=self.padding,  # type: ignore[arg-type]
                               extra_bias=extra_bias)
        out = super().forward(x)
        if extra_bias is not None:
            bias = extra_bias[:, :, None, None, None].to(out.dtype)  # (B, C_out) over T, H, W
            # In place on the fresh output when there is no autograd graph to protect.
            out = out.add_(bias) if not torch.is_grad_enabled() else out + bias
        return out

"""The U-Net's residual block: GroupNorm, SiLU, Conv3D, twice, with the embedding added between.

Paper Sec. 2.3: "GroupNormalize, SiLU, and Conv3D" with the time-step (and condition) embedding
"added in the middle of the Residual Block". The second convolution starts at zero (as in ADM),
so a freshly built block is the identity on its skip path and deep U-Nets train from step one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvdm_plugins.unet3d.padding import TemporalReplicateConv3d

__all__ = ["PointwiseConv3d", "ResidualBlock", "group_norm"]


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    """GroupNorm with the most groups that divide ``channels``, at most ``max_groups`` and with at
    least 4 channels per group where ``channels`` allows it.

    The paper's widths (128, 256, 512) get 32 groups. A narrow test model (8 channels) gets 2 groups
    of 4 rather than 8 groups of 1: with one channel per group the normalisation after the
    embedding is added would subtract that per-channel constant again and erase the conditioning.
    """
    limit = max(1, min(max_groups, channels // 4))
    groups = max(g for g in range(1, limit + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 ``nn.Conv3d`` computed as a matrix multiply over the channels of every position.

    PyTorch's CPU ``conv3d`` sends 1x1x1 kernels to its slow reference path; for channels-last
    input, ``F.linear`` on the free view ``(B, T, H, W, C)`` is one GEMM.
    Same parameters and state-dict keys as ``nn.Conv3d(in, out, kernel_size=1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)`` in the memory layout of ``x``."""
        if not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super().forward(x)
        tokens = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C_in), a view
        return F.linear(tokens, self.weight.flatten(1), self.bias).permute(0, 4, 1, 2, 3)


class ResidualBlock(nn.Module):
    """``x + F(x, emb)`` with ``F`` = norm-SiLU-conv, + embedding, norm-SiLU-dropout-conv.

    ``(B, C_in, T, H, W)``, emb ``(B, emb_dim)`` -> ``(B, C_out, T, H, W)``; a 1x1x1 convolution
    matches channels on the skip path when ``C_in != C_out``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, emb_dim: int, norm_groups: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = TemporalReplicateConv3d(in_channels, out_channels)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = TemporalReplicateConv3d(out_channels, out_channels)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else PointwiseConv3d(in_channels, out_channels))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        # Without autograd (sampling) SiLU and the skip sum run in place on fresh tensors. With
        # autograd they do not: in-place ops on module outputs break users' backward hooks.
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace),
                       extra_bias=self.emb_proj(emb))  # + (B, C_out) broadcast over T, H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=inplace)))
        return h.add_(self.skip(x)) if inplace else h + self.skip(x)

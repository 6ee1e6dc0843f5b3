"""The VQGAN's residual block: (GroupNorm, SiLU, Conv3D) twice, plus a skip path.

The same pre-activation block as LDM's autoencoder and TATS's 3D VQGAN, with every convolution
padded by replicating frames in time (:mod:`.padding`).
"""

from __future__ import annotations

from torch import Tensor, nn

from vqvdm_plugins.vqgan3d.padding import SpatialPadding, TemporalReplicateConv3d

__all__ = ["ResidualBlock", "group_norm"]


MIN_CHANNELS_PER_GROUP = 4


def group_norm(channels: int, max_groups: int) -> nn.Module:
    """GroupNorm with the most groups ``<= max_groups`` that divide ``channels`` into groups of at
    least 4 channels (fewer only when ``channels < 4``).

    LDM's 128 channels in 32 groups have 4 channels per group; narrower CPU configs keep at least
    that. With one channel per group GroupNorm becomes instance norm, which removes every channel's
    per-clip mean, so absolute levels (a plain background's colour) survive only through skip paths.

    ``max_groups=0`` means no normalisation (an ``nn.Identity``).
    """
    if max_groups == 0:
        return nn.Identity()
    min_size = min(MIN_CHANNELS_PER_GROUP, channels)
    groups = max(g for g in range(1, min(max_groups, channels) + 1)
                 if channels % g == 0 and channels // g >= min_size)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResidualBlock(nn.Module):
    """``skip(x) + conv(SiLU(norm(conv(SiLU(norm(x))))))``: ``(B, C_in, T, H, W) -> (B, C_out, T, H, W)``."""

    def __init__(self, *, in_channels: int, out_channels: int, norm_groups: int = 32,
                 spatial_padding: SpatialPadding = "replicate", dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = TemporalReplicateConv3d(in_channels, out_channels, spatial_padding=spatial_padding)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = TemporalReplicateConv3d(out_channels, out_channels, spatial_padding=spatial_padding)
        self.act = nn.SiLU()
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv3d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.skip(x) + h

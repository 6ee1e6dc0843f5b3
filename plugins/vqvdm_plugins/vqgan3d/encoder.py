"""The 3D VQGAN encoder: video -> continuous latent ``z_e`` (paper Sec. 2.2, Fig. 1).

Layout follows LDM's autoencoder with every convolution made 3D (as TATS does):
``conv_in``, one level per entry of ``channel_mults`` (``num_res_blocks`` residual blocks, then a
strided convolution between levels; with ``num_res_blocks=0`` that convolution changes the width),
``mid_blocks`` (two) middle residual blocks, ``norm-SiLU-conv_out`` to
``latent_channels``. There is no attention: the paper's encoder is "composed of 3D convolution
layers" only.

Which levels halve time and which halve space is :func:`resampling_plan`: time is halved at the
first ``log2(temporal_factor)`` transitions, space at the first ``log2(spatial_factor)`` ones, so the
paper's ``4 x 8 x 8`` halves time and space twice, then space alone once (as TATS does).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vqvdm_plugins.vqgan3d.padding import SpatialPadding, TemporalReplicateConv3d
from vqvdm_plugins.vqgan3d.residual_block import ResidualBlock, group_norm

__all__ = ["Encoder", "resampling_plan"]


def resampling_plan(temporal_factor: int, spatial_factor: int) -> list[tuple[int, int]]:
    """``(time_stride, space_stride)`` of each level transition, in encoder order.

    ``resampling_plan(4, 8) == [(2, 2), (2, 2), (1, 2)]``. Factors must be powers of two.
    """
    for name, f in (("temporal", temporal_factor), ("spatial", spatial_factor)):
        if f < 1 or f & (f - 1):
            raise ValueError(f"{name} factor must be a power of two, got {f}")
    n_t, n_s = temporal_factor.bit_length() - 1, spatial_factor.bit_length() - 1
    return [(2 if i < n_t else 1, 2 if i < n_s else 1) for i in range(max(n_t, n_s))]


class Downsample(nn.Module):
    """A strided convolution: kernel 4 on halved axes, 3 on kept ones (symmetric padding either way)."""

    def __init__(self, *, in_channels: int, out_channels: int, time_stride: int, space_stride: int,
                 spatial_padding: SpatialPadding):
        super().__init__()
        kt, ks = (4 if time_stride == 2 else 3), (4 if space_stride == 2 else 3)
        self.conv = TemporalReplicateConv3d(in_channels, out_channels, kernel_size=(kt, ks, ks),
                                            stride=(time_stride, space_stride, space_stride),
                                            spatial_padding=spatial_padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (B, C_in, T, H, W) -> (B, C_out, T / s_t, H / s_s, W / s_s)


class Encoder(nn.Module):
    """``(B, 3, T, H, W)`` -> ``(B, latent_channels, T / temporal_factor, H / spatial_factor, W / ...)``."""

    def __init__(self, *, in_channels: int = 3, channels: int, channel_mults: Sequence[int],
                 num_res_blocks: int, latent_channels: int, temporal_factor: int, spatial_factor: int,
                 norm_groups: int = 32, spatial_padding: SpatialPadding = "replicate", mid_blocks: int = 2):
        super().__init__()
        plan = resampling_plan(temporal_factor, spatial_factor)
        if len(channel_mults) != len(plan) + 1:
            raise ValueError(f"channel_mults needs {len(plan) + 1} entries for factors "
                             f"{temporal_factor}x{spatial_factor}x{spatial_factor}, got {list(channel_mults)}")
        widths = [channels * m for m in channel_mults]
        block = dict(norm_groups=norm_groups, spatial_padding=spatial_padding)
        self.conv_in = TemporalReplicateConv3d(in_channels, widths[0], spatial_padding=spatial_padding)
        layers: list[nn.Module] = []
        width = widths[0]
        for level, level_width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(in_channels=width, out_channels=level_width, **block))
                width = level_width
            if level < len(plan):
                # Without residual blocks the strided convolution widens to the next level.
                out_width = width if num_res_blocks else widths[level + 1]
                t_stride, s_stride = plan[level]
                layers.append(Downsample(in_channels=width, out_channels=out_width, time_stride=t_stride,
                                         space_stride=s_stride, spatial_padding=spatial_padding))
                width = out_width
        self.down = nn.Sequential(*layers)
        self.mid = nn.Sequential(*(ResidualBlock(in_channels=width, out_channels=width, **block)
                                   for _ in range(mid_blocks)))
        self.norm_out = group_norm(width, norm_groups)
        self.act = nn.SiLU()
        self.conv_out = TemporalReplicateConv3d(width, latent_channels, spatial_padding=spatial_padding)

    def forward(self, video: Tensor) -> Tensor:
        h = self.down(self.conv_in(video))
        h = self.mid(h)
        return self.conv_out(self.act(self.norm_out(h)))

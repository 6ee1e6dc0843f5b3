"""The 3D VQGAN decoder: latent -> video, the mirror image of :mod:`.encoder`.

``conv_in`` from ``latent_channels``, ``mid_blocks`` (two) middle residual blocks, then the encoder's
levels in reverse: ``num_res_blocks`` residual blocks each, and between levels a nearest-neighbour
upsampling followed by a 3D convolution (LDM's upsampler; it avoids the checkerboard artefacts of the
transposed convolutions TATS uses), or with ``upsample="transposed"`` TATS's transposed convolution.
Unlike LDM, the upsampling convolution already narrows to the next level's width, so no
full-resolution convolution runs at the wider level's width: on CPU that conv's backward pass was a
quarter of a small model's step. ``norm-SiLU-conv_out`` to RGB; the output is not squashed (LDM), so
it is "roughly" in [-1, 1] and callers clamp for display.

Any latent of the right shape decodes, on or off the codebook (a diffusion sample rarely lies on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vqvdm_plugins.vqgan3d.encoder import resampling_plan
from vqvdm_plugins.vqgan3d.padding import SpatialPadding, TemporalReplicateConv3d
from vqvdm_plugins.vqgan3d.residual_block import ResidualBlock, group_norm

__all__ = ["Decoder"]


UpsampleMode = Literal["nearest", "transposed"]


class Upsample(nn.Module):
    """Upsampling by ``(time_stride, space_stride, space_stride)`` that already narrows to the next
    level's width (``in_channels -> out_channels``).

    ``nearest`` (LDM): nearest-neighbour repetition, then a 3x3x3 convolution at the new size.
    ``transposed`` (TATS): one transposed convolution, kernel 4 on doubled axes and 3 on kept ones;
    it runs on the input grid, so at the full-resolution level it costs a fraction of ``nearest``.
    A transposed convolution has no padding mode: its first and last output frames see one input
    frame fewer rather than a replicated one (as in TATS).
    """

    def __init__(self, *, in_channels: int, out_channels: int, time_stride: int, space_stride: int,
                 spatial_padding: SpatialPadding, mode: UpsampleMode = "nearest"):
        super().__init__()
        self.mode = mode
        self.scale = (float(time_stride), float(space_stride), float(space_stride))
        if mode == "nearest":
            self.conv = TemporalReplicateConv3d(in_channels, out_channels, spatial_padding=spatial_padding)
        else:
            kernel = tuple(4 if s == 2 else 3 for s in (time_stride, space_stride, space_stride))
            strides = (time_stride, space_stride, space_stride)
            # padding (k - s) / 2 = 1 on every axis makes the output exactly stride x the input.
            self.conv = nn.ConvTranspose3d(in_channels, out_channels, kernel, stride=strides, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "transposed":
            return self.conv(x)  # (B, C_in, t, h, w) -> (B, C_out, t * s_t, h * s_s, w * s_s)
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class Decoder(nn.Module):
    """``(B, latent_channels, t, h, w)`` -> ``(B, 3, t * temporal_factor, h * spatial_factor, w * ...)``."""

    def __init__(self, *, out_channels: int = 3, channels: int, channel_mults: Sequence[int],
                 num_res_blocks: int, latent_channels: int, temporal_factor: int, spatial_factor: int,
                 norm_groups: int = 32, spatial_padding: SpatialPadding = "replicate", mid_blocks: int = 2,
                 upsample: UpsampleMode = "nearest"):
        super().__init__()
        plan = resampling_plan(temporal_factor, spatial_factor)
        if len(channel_mults) != len(plan) + 1:
            raise ValueError(f"channel_mults needs {len(plan) + 1} entries for factors "
                             f"{temporal_factor}x{spatial_factor}x{spatial_factor}, got {list(channel_mults)}")
        widths = [channels * m for m in channel_mults]
        block = dict(norm_groups=norm_groups, spatial_padding=spatial_padding)
        width = widths[-1]
        self.conv_in = TemporalReplicateConv3d(latent_channels, width, spatial_padding=spatial_padding)
        self.mid = nn.Sequential(*(ResidualBlock(in_channels=width, out_channels=width, **block)
                                   for _ in range(mid_blocks)))
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(in_channels=width, out_channels=widths[level], **block))
                width = widths[level]
            if level > 0:
                t_stride, s_stride = plan[level - 1]
                layers.append(Upsample(in_channels=width, out_channels=widths[level - 1],
                                       time_stride=t_stride, space_stride=s_stride,
                                       spatial_padding=spatial_padding, mode=upsample))
                width = widths[level - 1]
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(width, norm_groups)
        self.act = nn.SiLU()
        self.conv_out = TemporalReplicateConv3d(width, out_channels, spatial_padding=spatial_padding)

    def temporal_reach(self) -> int | None:
        """Latent frames on each side that one output frame depends on; None with GroupNorm (its
        statistics span every frame). Follows the forward pass: a temporal kernel ``k`` at a level
        with ``f`` frames per latent frame reaches ``(k // 2) / f`` latent frames; a transposed
        upsampling (kernel 4, stride 2) reaches one frame of its input level."""
        if any(isinstance(m, nn.GroupNorm) for m in self.modules()):
            return None
        reach, per_latent = 0.0, 1

        def conv(module: nn.Module) -> float:
            return (module.kernel_size[0] // 2) / per_latent  # type: ignore[union-attr,operator]

        reach += conv(self.conv_in)
        for module in (*self.mid, *self.up):
            if isinstance(module, ResidualBlock):
                reach += conv(module.conv1) + conv(module.conv2)
            elif isinstance(module, Upsample):
                stride = int(module.scale[0])
                if module.mode == "transposed":
                    reach += 1.0 / per_latent
                    per_latent *= stride
                else:
                    per_latent *= stride
                    reach += conv(module.conv)
        reach += conv(self.conv_out)
        return math.ceil(reach - 1e-9)

    def forward(self, latent: Tensor) -> Tensor:
        h = self.mid(self.conv_in(latent))
        h = self.up(h)
        return self.conv_out(self.act(self.norm_out(h)))

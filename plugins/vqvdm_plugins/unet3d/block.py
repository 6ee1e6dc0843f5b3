"""One U-Net block (paper Fig. 2): Residual Block, then Spatial Attention, then Temporal Attention."""

from __future__ import annotations

from torch import Tensor, nn

from vqvdm_plugins.unet3d.residual_block import ResidualBlock
from vqvdm_plugins.unet3d.spatial_attention import SpatialAttention
from vqvdm_plugins.unet3d.temporal_attention import TemporalAttention

__all__ = ["UNetBlock"]


class UNetBlock(nn.Module):
    """``ResidualBlock`` followed, when ``heads`` is given, by spatial and causal temporal attention.

    ``(B, C_in, T, H, W)``, emb ``(B, emb_dim)`` -> ``(B, C_out, T, H, W)``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, emb_dim: int, heads: int | None,
                 norm_groups: int = 32, dropout: float = 0.0, temporal_position: str = "rope"):
        super().__init__()
        self.res = ResidualBlock(in_channels=in_channels, out_channels=out_channels, emb_dim=emb_dim,
                                 norm_groups=norm_groups, dropout=dropout)
        self.spatial = self.temporal = None
        if heads is not None:
            self.spatial = SpatialAttention(channels=out_channels, heads=heads)
            self.temporal = TemporalAttention(channels=out_channels, heads=heads, position=temporal_position)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, emb)
        if self.spatial is not None:
            h = self.temporal(self.spatial(h))
        return h

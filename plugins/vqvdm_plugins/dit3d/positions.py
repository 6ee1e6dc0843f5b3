"""Position encodings of the latent patches: DiT's fixed 2D sin-cos table over the patch grid, and
Latte's learned temporal embedding (the rotary alternative lives in ``vqvdm_plugins/rotary.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

from vqvdm_plugins.embeddings import sinusoidal_encoding

__all__ = ["sincos_2d"]


def sincos_2d(height: int, width: int, dim: int, *, device=None, dtype=torch.float32) -> Tensor:
    """The ``(height * width, dim)`` table of MAE / DiT: half the channels encode the row, half the
    column, each as the Transformer's ``[cos, sin]`` encoding of the integer coordinate. Row-major
    order, as ``PatchEmbed`` flattens the grid. ``dim`` must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos position table needs a width divisible by 4, got {dim}")
    rows = torch.arange(height, device=device, dtype=torch.float32).repeat_interleave(width)  # (h*w,)
    cols = torch.arange(width, device=device, dtype=torch.float32).repeat(height)  # (h*w,)
    table = torch.cat([sinusoidal_encoding(rows, dim // 2), sinusoidal_encoding(cols, dim // 2)], dim=1)
    return table.to(dtype)

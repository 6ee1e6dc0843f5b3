"""Sinusoidal scalar embeddings: the time-step embedding and the FPS embedding (paper Eq. 6).

Both are ``Linear(SiLU(Linear(PE(x))))`` where ``PE`` is the Transformer's sinusoidal encoding
(Vaswani et al.). The paper stresses that the FPS embedding has the same form as the time-step
embedding but its own weights, so both are instances of :class:`SinusoidalEmbedding`, never one
shared module. ``PE`` is defined for any real value, so continuous FPS values (7.5, 29.97) need no
rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_encoding", "SinusoidalEmbedding"]


def sinusoidal_encoding(values: Tensor, dim: int, *, max_period: float = 10_000.0) -> Tensor:
    """``(B,)`` real values -> ``(B, dim)`` encoding ``[cos(v * f_i), sin(v * f_i)]``.

    Frequencies ``f_i = max_period ** (-i / (dim / 2))`` for ``i < dim / 2`` span one cycle per
    ``2 pi`` units down to one per ``2 pi * max_period`` units. An odd ``dim`` gets one zero column.
    Computed in float32 (float64 for float64 input) whatever the input dtype: half precision cannot
    tell time step 998 from 999.
    """
    if values.ndim != 1:
        raise ValueError(f"expected a (B,) tensor of values, got shape {tuple(values.shape)}")
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    half = dim // 2
    exponent = torch.arange(half, device=values.device, dtype=dtype) / max(half, 1)
    freqs = torch.exp(-math.log(max_period) * exponent)  # (half,)
    angles = values.to(dtype)[:, None] * freqs[None, :]  # (B, half)
    encoding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        encoding = torch.nn.functional.pad(encoding, (0, 1))
    return encoding


class SinusoidalEmbedding(nn.Module):
    """``Linear(SiLU(Linear(PE(x))))``: a scalar per example -> a ``(B, out_dim)`` embedding.

    ``encoding_dim`` is the width of ``PE``; ``out_dim`` the embedding width (the denoiser's
    ``emb_dim``). The hidden width equals ``out_dim`` as in DDPM/ADM.
    """

    def __init__(self, *, encoding_dim: int, out_dim: int, max_period: float = 10_000.0):
        super().__init__()
        self.encoding_dim = encoding_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(encoding_dim, out_dim),
            nn.SiLU(),
            nn.Linear(out_dim, out_dim),
        )

    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` int or float values -> ``(B, out_dim)`` in the dtype of the MLP's weights."""
        weight = self.mlp[0].weight
        encoding = sinusoidal_encoding(values, self.encoding_dim, max_period=self.max_period)
        return self.mlp(encoding.to(weight.dtype))

"""A 3D convolution as one matrix multiply (im2col), for the U-Net's deepest level on the CPU.

At the paper's deepest level (4x4 latent frames, batch 2 under CFG) a 3x3x3 convolution from the
1024 channels of a concatenated skip to 512 has only ``2 x 4 x 4 x 4 = 128`` output positions but
a 56 MB weight. oneDNN (PyTorch's CPU convolution) reorders the weight into its blocked layout on
every call, which moves more memory than the multiply needs; measured here it ran at a third of
matmul speed on those layers. Written as ``columns @ weight.T`` the weight is read in place (a
transposed GEMM operand, no copy) and the layer runs at matmul speed.

:func:`prefers_gemm` is the rule: on the CPU, when no gradient is needed (the strided column view
has a slow backward), and when the convolution has more output channels than output positions
(the weight then outweighs the column matrix the GEMM has to build). Everything else stays on
``F.conv3d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv3d_gemm", "prefers_gemm"]


def prefers_gemm(x: Tensor, weight: Tensor, out_positions: int) -> bool:
    """Whether :func:`conv3d_gemm` beats ``F.conv3d`` for input ``x`` (see the module docstring)."""
    if x.device.type != "cpu":
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return weight.shape[0] > out_positions


def conv3d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, *, padding: tuple[int, int, int],
                extra_bias: Tensor | None = None) -> Tensor:
    """``F.conv3d(x, weight, bias, padding=padding)`` (stride 1, zero padding) as one GEMM.

    ``x`` ``(B, C, T, H, W)``, ``weight`` ``(O, C, kt, kh, kw)`` -> ``(B, O, T', H', W')`` in
    channels-last memory. ``extra_bias`` ``(B, O)`` is added per example (the residual block's
    embedding), in place.
    """
    pt, ph, pw = padding
    if ph or pw or pt:
        x = F.pad(x, (pw, pw, ph, ph, pt, pt))  # zeros; F.pad's tuple runs from the last axis
    x = x.contiguous(memory_format=torch.channels_last_3d)  # memory (B, T, H, W, C)
    b, c, t, h, w = x.shape
    o, _, kt, kh, kw = weight.shape
    to, ho, wo = t - kt + 1, h - kh + 1, w - kw + 1
    sb, sc, st, sh, sw = x.stride()
    # One row of columns per output position (B, T', H', W'); the columns follow the weight's
    # memory order, so that the weight is a free (O, K) view used transposed by the GEMM:
    if weight.is_contiguous(memory_format=torch.channels_last_3d):
        # (kt, kh, kw, C): copied in runs of C contiguous channels (the faster gather).
        columns = x.as_strided((b, to, ho, wo, kt, kh, kw, c), (sb, st, sh, sw, st, sh, sw, sc))
        w_t = weight.permute(0, 2, 3, 4, 1).reshape(o, -1).t()
    else:
        # (C, kt, kh, kw): the default weight layout.
        columns = x.as_strided((b, to, ho, wo, c, kt, kh, kw), (sb, st, sh, sw, sc, st, sh, sw))
        w_t = weight.reshape(o, -1).t()
    columns = columns.reshape(b * to * ho * wo, c * kt * kh * kw)  # the one copy
    out = torch.matmul(columns, w_t) if bias is None else torch.addmm(bias, columns, w_t)
    out = out.view(b, to * ho * wo, o)
    if extra_bias is not None:
        out = out.add_(extra_bias[:, None, :].to(out.dtype))  # (B, O) broadcast over positions
    # (B, T'H'W', O) -> (B, O, T', H', W'): a view whose memory is channels-last.
    return out.view(b, to, ho, wo, o).permute(0, 4, 1, 2, 3)

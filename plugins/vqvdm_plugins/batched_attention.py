"""``scaled_dot_product_attention`` over any number of sequences.

The factorised attentions fold space or time into the batch: the U-Net's temporal attention runs
``B * H * W`` sequences (the paper's 16 x 16 latents at a sampling batch of 256 clips, doubled by
classifier-free guidance, are 131,072). CUDA's fused attention kernels put the batch on a grid
dimension limited to 65,535 blocks and have failed from a batch of 65,536 on
(PyTorch issues 142228 and 146704). On CUDA this function runs more sequences than that in equal
chunks below the limit; each sequence's result does not depend on the others, so the output is the
same attention. Elsewhere it is the plain call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CUDA_MAX_SEQUENCES", "batched_attention"]

CUDA_MAX_SEQUENCES = 65_535
"""The most sequences one fused CUDA attention call is given."""


def batched_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                      max_sequences: int | None = None) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``(N, heads, L, d)``; ``causal``: no query sees a later key.

    ``max_sequences`` (default: :data:`CUDA_MAX_SEQUENCES` on CUDA, unlimited elsewhere) bounds the
    ``N`` of each fused call; more sequences run in ``ceil(N / max_sequences)`` equal chunks.
    """
    if max_sequences is None:
        max_sequences = CUDA_MAX_SEQUENCES if q.device.type == "cuda" else 0
    n = q.shape[0]
    if not max_sequences or n <= max_sequences:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    size = math.ceil(n / math.ceil(n / max_sequences))  # equal chunks, each within the limit
    return torch.cat([F.scaled_dot_product_attention(qc, kc, vc, is_causal=causal)
                      for qc, kc, vc in zip(q.split(size), k.split(size), v.split(size))])

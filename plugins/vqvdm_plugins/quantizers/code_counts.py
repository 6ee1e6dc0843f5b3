"""How many vectors of a batch each code was assigned: the statistic behind perplexity, codebook usage,
the EMA update and dead-code re-seeding.

``torch.bincount`` would do, but on CUDA it reads the largest index on the host to size its output:
a wait for the GPU in every training step. The number of codes is known, so the counts are a
scatter-add of ones into that many bins, with the same (integer) result on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["code_counts"]


def code_counts(indices: Tensor, num_codes: int) -> Tensor:
    """``(num_codes,)`` float32: how often each code occurs in ``indices`` (any shape, values in
    ``[0, num_codes)``)."""
    flat = indices.reshape(-1).long()
    counts = torch.zeros(num_codes, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    return counts.float()

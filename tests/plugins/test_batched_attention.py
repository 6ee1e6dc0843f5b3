"""Attention over more sequences than one fused CUDA call takes runs in chunks, with the same result."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqvdm_plugins import batched_attention as module
from vqvdm_plugins.batched_attention import CUDA_MAX_SEQUENCES, batched_attention


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_attention_equals_one_call(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(20, 2, 5, 8, generator=g) for _ in range(3))
    whole = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    chunked = batched_attention(q, k, v, causal=causal, max_sequences=7)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    if causal:  # the mask is kept: the first query sees the first key only
        torch.testing.assert_close(chunked[:, :, 0], v[:, :, 0], rtol=0, atol=1e-6)


def test_chunks_are_equal_and_within_the_limit(monkeypatch):
    sizes = []
    real = F.scaled_dot_product_attention

    def counting(q, k, v, **kwargs):
        sizes.append(q.shape[0])
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(module.F, "scaled_dot_product_attention", counting)
    q = torch.randn(20, 1, 3, 4)
    batched_attention(q, q, q, max_sequences=7)
    assert sizes == [7, 7, 6]
    sizes.clear()
    batched_attention(q, q, q)  # on the CPU: one call, whatever the batch
    assert sizes == [20]
    assert CUDA_MAX_SEQUENCES < 65_536  # the batch from which CUDA's fused kernels have failed

"""``lfq``: lookup-free quantization (Yu et al. 2023, MAGVIT-v2, "Language Model Beats Diffusion").

Each of the ``K`` latent channels is quantized to its sign, ``q_k = sign(z_k) * scale``: the codebook is
the ``2^K`` corners of a cube, an index is the binary number of the signs, and no lookup or codebook
is learned. Gradients pass straight through (``z + sg[q - z]``). The auxiliary loss (the paper's
Eq. 4-5) is

    commitment_weight ||z - sg[q]||^2  +  entropy_weight (E_z[H(p(c | z))]  -  gamma H(E_z[p(c | z)]))

with ``p(c | z)`` the softmax over the codes ``c`` of ``-||z - c||^2 / temperature``: the first entropy
term makes each position confident of one code, the second (``gamma``, the diversity weight) spreads
the batch over the whole codebook.

The codes' distances add up over channels, so ``p(c | z)`` is a product of one two-way softmax per
channel and the per-sample entropy is exactly the sum of ``K`` per-channel entropies, for any ``K``.
The batch entropy needs the full ``2^K`` table: it is computed exactly while ``K <=
exact_entropy_bits``, and above that as the sum of the per-channel entropies of the batch-mean
probabilities (an upper bound; MAGVIT-v2 uses such a factorisation for its 2^18 codebook).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import ComponentConfig, Quantized, Quantizer
from vqvdm_core.runtime.distributed import batch_share, batch_sum, is_sharded
from vqvdm_plugins.quantizers.code_counts import code_counts

__all__ = ["LFQ"]


def _entropy(probs: Tensor, dim: int = -1) -> Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-10))).sum(dim)


def _global_mean(probs: Tensor) -> Tensor:
    """The mean over dim 0 of ``probs`` across the processes sharing the batch, with the gradient of
    this process's rows times the number of processes (see :meth:`LFQ.entropies`)."""
    _, count = batch_share()
    if count == 1 or is_sharded():
        return probs.mean(0)
    local = probs.sum(0)
    total = batch_sum(local.detach())
    mean = (local + (total - local).detach()) / (probs.shape[0] * count)
    return count * mean - (count - 1) * mean.detach()  # the value of the mean, count x its gradient


class LFQ(Quantizer):
    """Sign quantization per channel with MAGVIT-v2's entropy penalty: ``(B, K, t, h, w)`` in and out."""

    class Config(ComponentConfig):
        channels: int | None = Field(None, ge=1, le=62, description="code bits K (2^K codes); null: wired "
                                     "from the tokenizer's latent_channels")
        scale: float = Field(1.0, gt=0, description="value of a code's coordinates (+-scale)")
        commitment_weight: float = Field(0.25, ge=0, description="weight of ||z - sg[q]||^2")
        entropy_weight: float = Field(0.1, ge=0, description="weight of the entropy penalty (MAGVIT-v2: 0.1)")
        diversity_gamma: float = Field(1.0, ge=0, description="weight of the batch entropy inside the penalty")
        temperature: float = Field(0.01, gt=0, description="softmax temperature of p(c | z) over -||z - c||^2")
        exact_entropy_bits: int = Field(14, ge=1, le=20, description="largest K whose batch entropy is computed "
                                        "over the full 2^K table (above: per-channel, an upper bound)")

    config: Config

    def __init__(self, config: "LFQ.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        if self.config.channels is None:
            raise ValueError("lfq quantizer: channels is not set; a tokenizer wires it from its latent_channels")
        bits = self.config.channels
        self.register_buffer("powers", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)  # MSB first

    @property
    def latent_channels(self) -> int:
        return int(self.config.channels)  # type: ignore[arg-type]

    @property
    def bits_per_position(self) -> float:
        return float(self.latent_channels)

    def _check(self, z: Tensor) -> None:
        if z.shape[1] != self.latent_channels:
            raise ValueError(f"lfq: the latent has {z.shape[1]} channels, the quantizer {self.latent_channels} bits")

    def codes(self) -> Tensor:
        """``(2^K, K)``: every code, row ``i`` the signs of the binary digits of ``i`` times ``scale``."""
        index = torch.arange(2 ** self.latent_channels, device=self.powers.device)
        bits = (index[:, None] // self.powers[None, :]) % 2
        return (bits.float() * 2 - 1) * self.config.scale

    def bit_probabilities(self, flat: Tensor) -> Tensor:
        """``(N, K)`` probability of the + sign per channel: the two-way softmax of ``-||z_k -/+ s||^2 /
        temperature``, i.e. ``sigmoid(4 s z_k / temperature)``."""
        return torch.sigmoid(4 * self.config.scale * flat / self.config.temperature)

    def entropies(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """(mean per-sample entropy, batch entropy) in nats of ``p(c | z)`` for the rows ``(N, K)`` of ``flat``.

        The batch entropy is that of the whole global batch when several processes share it: the
        batch-mean probabilities are summed over the processes (:func:`batch_sum`), each keeping the
        gradient of its own rows, and that gradient is scaled by the number of processes, which the
        engine's gradient averaging divides out again; so 1 or N processes train the same. (Inside a
        sharded step, whose other shards are not computed yet, it is the shard's own batch.)"""
        p_plus = self.bit_probabilities(flat)
        per_bit = torch.stack([p_plus, 1 - p_plus], -1)  # (N, K, 2)
        per_sample = _entropy(per_bit).sum(1).mean()
        if self.latent_channels <= self.config.exact_entropy_bits:
            logits = -torch.cdist(flat, self.codes()) ** 2 / self.config.temperature  # (N, 2^K)
            batch = _entropy(_global_mean(F.softmax(logits, dim=1)))
        else:
            batch = _entropy(_global_mean(per_bit)).sum()
        return per_sample, batch

    def forward(self, z: Tensor, *, update: bool = False) -> Quantized:
        self._check(z)
        b, _, t, h, w = z.shape
        s = self.config.scale
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float()
            q = torch.where(zf > 0, s, -s)
            latent = zf + (q - zf).detach()  # straight-through
            commitment = F.mse_loss(zf, q)
            flat = rearrange(zf, "b k t h w -> (b t h w) k")
            per_sample, batch = self.entropies(flat)
            c = self.config
            loss = c.commitment_weight * commitment + c.entropy_weight * (per_sample - c.diversity_gamma * batch)
            indices = ((q > 0).long() * rearrange(self.powers, "k -> 1 k 1 1 1")).sum(1)  # (B, t, h, w)
            stats = {"commitment": commitment.detach(), "entropy_per_sample": per_sample.detach(),
                     "entropy_batch": batch.detach()}
            if self.latent_channels <= 20:  # usage over a codebook small enough to count
                with torch.no_grad():
                    counts = code_counts(indices, 2 ** self.latent_channels)
                    probs = counts / counts.sum()
                    stats["perplexity"] = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
                    stats["codes_in_use"] = (counts > 0).float().mean()
        return Quantized(latent=latent.to(z.dtype), loss=loss, indices=indices.view(b, t, h, w), stats=stats)

    @torch.no_grad()
    def snap(self, latent: Tensor) -> Tensor:
        self._check(latent)
        s = self.config.scale
        return torch.where(latent > 0, s, -s).to(latent.dtype)

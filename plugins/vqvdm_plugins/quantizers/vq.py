"""``vq``: vector quantization of the encoder output (paper Eq. 2) and the options that fight codebook collapse.

``z_q = q(z_e, e)``: every latent vector (one per position of ``(t, h, w)``) is replaced by its
nearest codebook entry; gradients pass straight through to the encoder (``z + sg[e - z]``). The loss
is Eq. 2, ``||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2``: the codebook term moves only the codebook,
the commitment term only the encoder.

Options beyond the paper (all off by default; see ``docs/components/vqgan3d.md`` for what they did
in our measurements):

* ``ema``: the codebook is a running mean of the encoder vectors assigned to each entry (decay
  0.99, VQ-VAE-2 / TATS) instead of being learned by the codebook loss, which is then zero. The
  codebook and its running sums are buffers, so they are in the state dict.
* ``init_from_data``: on the first training batch the codebook is filled with (jittered) encoder
  outputs, so every entry starts where the data is.
* ``dead_code_threshold``: after each training batch, entries whose running usage (mean number of
  vectors assigned per batch, decay ``ema_decay``) fell below the threshold are re-seeded with
  encoder vectors of that batch (TATS uses 1.0).

With several processes, usage counts and EMA sums are summed over processes and initial and
re-seeded rows are drawn from the global batch, so the codebook is the one a single process learns.
In a sharded training step (``train.tokenizer.shards``, see ``vqvdm_core.runtime.distributed``) the
lookups of every shard use the codebook as the step found it and the update runs once after the
last shard, from the shards' counts and sums added in shard order; a codebook initialised from data
takes its rows from shard 0.
* ``l2_normalize``: nearest neighbour by cosine similarity; latents and codes are unit vectors.

The distance computation always runs in float32, with autocast switched off, and in chunks so that
16384 codes against a large batch never materialise a huge distance matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.interfaces import ComponentConfig, Quantized, Quantizer
from vqvdm_core.runtime import devices
from vqvdm_core.runtime.distributed import (all_reduce_sum, at_step_end, batch_share, batch_sum, broadcast_tensors,
                                            combine_shards, is_distributed, is_sharded)
from vqvdm_plugins.quantizers.code_counts import code_counts

__all__ = ["QuantizerOutput", "VectorQuantizer"]


class QuantizerOutput(Quantized):
    """What :meth:`VectorQuantizer.forward` returns: a :class:`~vqvdm_core.interfaces.Quantized`
    whose ``stats`` are ``codebook`` and ``commitment`` (the two terms of Eq. 2 *without* ``beta``;
    ``loss`` combines them), ``perplexity`` and ``codes_in_use`` (share of the codebook used by this
    batch), with the names this class had before quantizers were plug-ins: ``z_q`` (the latent,
    straight-through gradients to ``z``), ``codebook_loss`` and ``commitment_loss`` (with their
    graphs), ``perplexity`` and ``codes_in_use`` (detached)."""

    def __init__(self, *, latent: Tensor, indices: Tensor, codebook_loss: Tensor, commitment_loss: Tensor,
                 loss: Tensor, perplexity: Tensor, codes_in_use: Tensor):
        super().__init__(latent=latent, loss=loss, indices=indices,
                         stats={"codebook": codebook_loss.detach(), "commitment": commitment_loss.detach(),
                                "perplexity": perplexity, "codes_in_use": codes_in_use})
        self.codebook_loss, self.commitment_loss = codebook_loss, commitment_loss

    @property
    def z_q(self) -> Tensor:
        return self.latent

    @property
    def perplexity(self) -> Tensor:
        return self.stats["perplexity"]

    @property
    def codes_in_use(self) -> Tensor:
        return self.stats["codes_in_use"]


class VectorQuantizer(Quantizer):
    """Nearest-neighbour codebook lookup with straight-through gradients: ``(B, D, t, h, w)`` in and out."""

    class Config(ComponentConfig):
        num_codes: int = Field(16384, ge=2, description="codebook entries")
        code_dim: int | None = Field(None, ge=1, description="channels of each code; null: wired from the "
                                     "tokenizer's latent_channels")
        beta: float = Field(0.25, ge=0, description="commitment weight in Eq. 2")
        ema: bool = Field(False, description="EMA codebook updates instead of the codebook loss")
        ema_decay: float = Field(0.99, gt=0, lt=1, description="decay of the EMA codebook and of the usage")
        ema_eps: float = Field(1e-5, ge=0, description="Laplace smoothing of the EMA counts")
        init_from_data: bool = Field(False, description="fill the codebook from the first training batch")
        dead_code_threshold: float | None = Field(
            None, gt=0, description="re-seed codes whose running usage (vectors per batch) falls below "
            "this from the current batch's encoder outputs; null disables (TATS: 1.0)")
        l2_normalize: bool = Field(False, description="cosine-similarity lookup on unit vectors")
        max_distance_elements: int = Field(1 << 24, ge=1, description="distance-matrix entries per chunk")

    config: Config

    def __init__(self, config: "VectorQuantizer.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        if c.code_dim is None:
            raise ValueError("vq quantizer: code_dim is not set; a tokenizer wires it from its latent_channels")
        num_codes, code_dim = c.num_codes, c.code_dim
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, c.beta
        self.ema, self.ema_decay, self.ema_eps = c.ema, c.ema_decay, c.ema_eps
        self.init_from_data, self.dead_code_threshold = c.init_from_data, c.dead_code_threshold
        self.l2_normalize = c.l2_normalize
        self.max_distance_elements = c.max_distance_elements
        ema = c.ema

        # taming-transformers / LDM initialisation: uniform in [-1/K, 1/K].
        codebook = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("codebook", codebook)
            # Running assignment counts and sums; codebook = sum / count. Starting at (1, e) keeps
            # an unused entry where it was instead of dividing by zero.
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        # Running mean of vectors assigned per batch, for dead-code detection (both modes). It starts
        # at 1 (like TATS's counts), so with the usual threshold 1.0 a code dies after one unused batch.
        self.register_buffer("usage", torch.ones(num_codes))
        self.register_buffer("initialized", torch.tensor(not c.init_from_data))
        # The host's copy of ``initialized`` once it is known True: reading the buffer of a GPU module
        # would make the host wait for the GPU at every training forward. A loaded state resets it.
        self._known_initialized = not c.init_from_data
        self._register_load_state_dict_pre_hook(lambda *args, **kwargs: setattr(self, "_known_initialized", False))
        # A sharded step's per-shard (shard index, vectors, counts, sums), applied after its last shard.
        self._pending: list[tuple[int, Tensor, Tensor, Tensor | None]] = []
        self._pending_shards = 1

    @property
    def latent_channels(self) -> int:
        return self.code_dim

    @property
    def bits_per_position(self) -> float:
        return math.log2(self.num_codes)

    def snap(self, latent: Tensor) -> Tensor:
        return self.quantize(latent)

    # -- lookup --------------------------------------------------------------------------------

    def codes(self) -> Tensor:
        """The ``(K, D)`` float32 vectors latents are snapped to (unit vectors when ``l2_normalize``)."""
        codes = self.codebook.float()
        return F.normalize(codes, dim=1) if self.l2_normalize else codes

    @torch.no_grad()
    def nearest(self, flat: Tensor, codes: Tensor | None = None) -> Tensor:
        """Index ``(N,)`` of the nearest code of each row of ``flat`` ``(N, D)`` (float32, chunked)."""
        codes = self.codes() if codes is None else codes
        codes_sq = (codes * codes).sum(1)  # (K,)
        chunk = max(1, self.max_distance_elements // codes.shape[0])
        out = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
        for start in range(0, flat.shape[0], chunk):
            part = flat[start:start + chunk]
            # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
            dist_sq = torch.addmm(codes_sq[None, :], part, codes.t(), beta=1.0, alpha=-2.0)  # (n, K)
            out[start:start + chunk] = dist_sq.argmin(dim=1)
        return out

    def _flatten(self, z: Tensor) -> Tensor:
        flat = rearrange(z.float(), "b d t h w -> (b t h w) d")
        return F.normalize(flat, dim=1) if self.l2_normalize else flat

    def quantize(self, z: Tensor) -> Tensor:
        """Snap ``z`` ``(B, D, t, h, w)`` to its nearest codes (no gradients, no state change)."""
        b, _, t, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = self._flatten(z)
            codes = self.codes()
            q = codes[self.nearest(flat, codes)]
        return rearrange(q, "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w).to(z.dtype)

    # -- forward -------------------------------------------------------------------------------

    def forward(self, z: Tensor, *, update: bool = False) -> QuantizerOutput:
        """Quantize ``z`` ``(B, D, t, h, w)``; ``update`` runs the training-time codebook updates
        (data init, EMA, dead-code re-seeding) after the lookup."""
        if z.shape[1] != self.code_dim:
            raise ValueError(f"latent has {z.shape[1]} channels, the codebook has {self.code_dim}-dim codes")
        b, _, t, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = self._flatten(z)  # (N, D) float32
            if update and not self._known_initialized:
                if not bool(self.initialized):
                    if is_sharded():
                        self._init_from_shard_zero(flat.detach())
                    else:
                        self._init_from(flat.detach())
                self._known_initialized = True
            codes = self.codes()
            indices = self.nearest(flat.detach(), codes)
            q = codes[indices]  # (N, D); carries the codebook's gradient when it is a Parameter
            codebook_loss = F.mse_loss(q, flat.detach())
            commitment_loss = F.mse_loss(flat, q.detach())
            if self.ema:
                # The EMA update replaces the codebook loss (its gradient would have nowhere to go).
                codebook_loss = codebook_loss.detach() * 0.0
            z_q_flat = flat + (q - flat).detach()  # straight-through estimator

            counts = code_counts(indices, self.num_codes)
            if update and is_sharded():
                self._defer_update(flat.detach(), indices, counts)
            elif update:
                self._update(flat.detach(), indices, counts)
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            codes_in_use = (counts > 0).float().mean()

        z_q = rearrange(z_q_flat, "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w).to(z.dtype)
        return QuantizerOutput(
            latent=z_q, indices=indices.view(b, t, h, w),
            codebook_loss=codebook_loss, commitment_loss=commitment_loss,
            loss=codebook_loss + self.beta * commitment_loss,
            perplexity=perplexity.detach(), codes_in_use=codes_in_use.detach(),
        )

    # -- training-time updates -----------------------------------------------------------------

    def _jittered(self, rows: Tensor) -> Tensor:
        """``rows`` plus a little noise, so that copies of one vector do not tie."""
        noise = torch.randn_like(rows) * (0.01 / self.code_dim ** 0.5) * rows.abs().mean().clamp_min(1e-3)
        rows = rows + noise
        return F.normalize(rows, dim=1) if self.l2_normalize else rows

    def _sample_rows(self, flat: Tensor, n: int) -> Tensor:
        """``n`` rows of the batch's vectors drawn at random (with replacement), slightly jittered.

        When several processes share the batch (``flat`` is this process's share), the rows are drawn
        from the global batch: every process draws the same global row numbers, fills in the rows it
        holds and the sum over processes assembles them, so each process gets the rows one process
        would have drawn.
        """
        index, count = batch_share()
        local = flat.shape[0]
        idx = torch.randint(0, local * count, (n,), device=flat.device)  # rows of the global batch
        if count == 1:
            rows = flat[idx]
        else:
            rows = batch_sum(_rows_held(flat, idx, index))
        return self._jittered(rows)

    def _sync_from_rank0(self) -> None:
        """Outside a training step's shared batch (a user's own distributed loop), rank 0's draw wins."""
        if is_distributed() and batch_share()[1] == 1 and not is_sharded():
            buffers = (self.codebook, getattr(self, "ema_sum", None), getattr(self, "ema_count", None), self.usage)
            broadcast_tensors([buf.data for buf in buffers if buf is not None], src=0)

    @torch.no_grad()
    def _init_from(self, flat: Tensor) -> None:
        self._set_initial(self._sample_rows(flat, self.num_codes))
        self._sync_from_rank0()

    @torch.no_grad()
    def _init_from_shard_zero(self, flat: Tensor) -> None:
        """Sharded step: rows of shard 0 (the first shard computed on rank 0), sent to every process
        when the first of its own shards finds the codebook uninitialised."""
        rows = torch.zeros(self.num_codes, flat.shape[1], device=flat.device, dtype=flat.dtype)
        if batch_share()[0] == 0:
            rows = self._jittered(flat[torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)])
        if is_distributed():
            broadcast_tensors([rows], src=0)
        self._set_initial(rows)

    def _set_initial(self, rows: Tensor) -> None:
        rows = rows.to(self.codebook.dtype)
        self.codebook.data.copy_(rows)
        if self.ema:
            self.ema_sum.copy_(rows)
            self.ema_count.fill_(1.0)
        self.usage.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        counts = all_reduce_sum(counts) if is_distributed() else counts.clone()
        sums = None
        if self.ema:
            sums = self._assigned_sums(flat, indices)
            if is_distributed():
                sums = all_reduce_sum(sums)
        self._apply_update(counts, sums, lambda n: self._sample_rows(flat, n))

    def _assigned_sums(self, flat: Tensor, indices: Tensor) -> Tensor:
        """``(K, D)``: the sum of the vectors assigned to each code."""
        sums = torch.zeros(self.num_codes, self.code_dim, device=flat.device, dtype=torch.float32)
        return sums.index_add_(0, indices, flat)

    @torch.no_grad()
    def _defer_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        sums = self._assigned_sums(flat, indices) if self.ema else None
        index, self._pending_shards = batch_share()
        self._pending.append((index, flat, counts, sums))
        at_step_end(self, self._finish_sharded_update)

    @torch.no_grad()
    def _finish_sharded_update(self) -> None:
        pending, self._pending = self._pending, []
        shards = self._pending_shards
        counts = combine_shards([c for _, _, c, _ in pending])
        sums = combine_shards([s for _, _, _, s in pending]) if self.ema else None  # type: ignore[misc]

        def rows(n: int) -> Tensor:
            # Rows of the global batch (every shard holds the same number of vectors): each shard
            # fills in the rows it holds, zeros elsewhere, and the sum over shards assembles them.
            local = pending[0][1].shape[0]
            idx = torch.randint(0, local * shards, (n,), device=counts.device)
            return self._jittered(combine_shards([_rows_held(flat, idx, index) for index, flat, _, _ in pending]))

        self._apply_update(counts, sums, rows)

    def _apply_update(self, counts: Tensor, sums: Tensor | None, draw_rows: Callable[[int], Tensor]) -> None:
        """One update from the global batch's assignment ``counts`` ``(K,)`` and (EMA) ``sums``
        ``(K, D)``; ``draw_rows(n)`` gives ``n`` jittered vectors of the global batch for dead codes."""
        decay = self.ema_decay
        self.usage.mul_(decay).add_(counts, alpha=1.0 - decay)
        if self.ema:
            self.ema_count.mul_(decay).add_(counts, alpha=1.0 - decay)
            self.ema_sum.mul_(decay).add_(sums, alpha=1.0 - decay)
            # Laplace smoothing keeps rarely used codes from dividing by ~0.
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.ema_eps) / (total + self.num_codes * self.ema_eps) * total
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        if self.dead_code_threshold is not None:
            dead = self.usage < self.dead_code_threshold
            if not devices.host_reads_are_free(dead.device):
                self._reseed_without_reading(dead, draw_rows)
                return
            n_dead = int(dead.sum())
            if n_dead:
                rows = draw_rows(n_dead).to(self.codebook.dtype)
                self.codebook.data[dead] = rows
                self.usage[dead] = self.dead_code_threshold
                if self.ema:
                    self.ema_sum[dead] = rows
                    self.ema_count[dead] = 1.0
                self._sync_from_rank0()

    def _reseed_without_reading(self, dead: Tensor, draw_rows: Callable[[int], Tensor]) -> None:
        """The re-seeding above without reading how many codes died (on a GPU, where that read waits
        for the GPU every step): a row drawn for every code, kept where the code is dead."""
        rows = draw_rows(self.num_codes).to(self.codebook.dtype)  # (K, D)
        self.codebook.data.copy_(torch.where(dead[:, None], rows, self.codebook.data))
        self.usage.copy_(torch.where(dead, torch.full_like(self.usage, self.dead_code_threshold), self.usage))
        if self.ema:
            self.ema_sum.copy_(torch.where(dead[:, None], rows.to(self.ema_sum.dtype), self.ema_sum))
            self.ema_count.copy_(torch.where(dead, torch.ones_like(self.ema_count), self.ema_count))
        self._sync_from_rank0()


def _rows_held(flat: Tensor, idx: Tensor, index: int) -> Tensor:
    """``(n, D)``: the rows ``idx`` of the global batch that share ``index`` holds (``flat``, its
    ``m`` rows ``[index * m, (index + 1) * m)``), zeros for the others."""
    local = flat.shape[0]
    mine = (idx // local) == index
    rows = torch.zeros(idx.shape[0], flat.shape[1], device=flat.device, dtype=flat.dtype)
    rows[mine] = flat[idx[mine] - index * local]
    return rows

"""Generating clips from a trained system for a list of conditions, in batches, with progress."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from rich.console import Console

from vqvdm_core.interfaces.sampler import sampling_chain
from vqvdm_core.pipeline.conditions import Conditions
from vqvdm_core.runtime.devices import autocast
from vqvdm_core.runtime.progress import progress


def conditions_for(system: Any, conditions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``conditions`` without the fields, other than ``label``/``fps``, that none of ``system``'s
    conditioners reads (the data may provide fields a recipe does not condition on)."""
    read = {cond.field for cond in system.conditioners}
    return {k: v for k, v in conditions.items() if k in read or k in ("label", "fps")}


class LatentMoments:
    """Running mean and standard deviation of every value of the generated (unscaled) latents.

    A trained denoiser's samples should have about the training latents' standard deviation; a
    ratio far from 1 means the sampler drifted off the data's scale (e.g. an epsilon model's x0
    estimate blown up at the noisiest steps), which decoded clips show as saturated colour fields.
    """

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def update(self, latent: torch.Tensor) -> None:
        z = latent.detach().double()
        self.count += z.numel()
        self.total += float(z.sum())
        self.total_sq += float((z * z).sum())

    @property
    def std(self) -> float:
        """Population standard deviation of all values seen (NaN before any)."""
        if self.count == 0:
            return math.nan
        mean = self.total / self.count
        return math.sqrt(max(self.total_sq / self.count - mean * mean, 0.0))


def generate(system: Any, conditions: Conditions, *, batch_size: int, steps: int | None,
             sampler: Any, guidance_scale: float | None, seed: int, device: torch.device,
             precision: str, console: Console, description: str = "sampling",
             latent_moments: LatentMoments | None = None,
             frames: int | None = None, context: torch.Tensor | None = None, overlap: int | None = None,
             known_frames: str = "replacement", reconstruction_weight: float = 2.0,
             known_guidance: float = 1.0, out_device: torch.device | str = "cpu",
             ) -> Iterator[tuple[Conditions, torch.Tensor]]:
    """Yield ``(conditions of the batch, video (B, 3, T, H, W) on out_device)`` batch by batch.

    ``sampler`` is a built sampler, a registered name, a recipe node or None (the system's default).
    Noise comes from one generator seeded with ``seed``, so the same call gives the same clips.
    ``latent_moments``, if given, sees every generated latent before it is decoded.
    ``frames`` / ``context`` (one clip ``(N, 3, K, H, W)`` per condition) / ``overlap`` /
    ``known_frames`` / ``reconstruction_weight`` / ``known_guidance``: long videos and continuations, as
    :meth:`~vqvdm_core.system.LatentVideoDiffusion.sample` takes them; the bar then counts every
    window's steps.
    ``out_device``: where the clips go (the CPU, to be written; the generating device, to be scored
    there without a round trip through the host).
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(conditions)
    sampler = system.resolve_sampler(sampler)
    long = frames is not None or context is not None
    windows = len(system.plan(frames=frames, context=None if context is None else context[:1],
                              overlap=overlap)) if long else 1
    steps_per_batch = windows * len(sampling_chain(sampler, system.schedule, steps))
    if windows > 1:
        description = f"{description} ({windows} windows)"
    batches = (n + batch_size - 1) // batch_size
    with progress(console, batches * steps_per_batch, description) as advance, torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            part = conditions.chunk(start, stop)
            extend: dict[str, Any] = {}
            if long:
                extend = dict(frames=frames, overlap=overlap, known_frames=known_frames,
                              reconstruction_weight=reconstruction_weight, known_guidance=known_guidance,
                              context=None if context is None else context[start:stop].to(device))
            with autocast(device, precision):
                latent = system.sample(
                    len(part),
                    conditions=conditions_for(system, part.tensors(device)),
                    steps=steps, sampler=sampler, guidance_scale=guidance_scale,
                    generator=generator, progress=lambda i, total: advance(1), decode=False, **extend,
                )
                if latent_moments is not None:
                    latent_moments.update(latent)
                video = system.decode(latent)
            if context is not None:
                video[:, :, :context.shape[2]] = context[start:stop].to(video)  # the given frames, as given
            yield part, video.float().clamp(-1, 1).to(out_device)

"""Generating clips from a trained system for a list of conditions, in batches, with progress."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from rich.console import Console

from vqvdm_core.devices import autocast
from vqvdm_core.pipeline.conditions import Conditions
from vqvdm_core.progress import progress


def generate(system: Any, conditions: Conditions, *, batch_size: int, steps: int | None,
             sampler: str | None, guidance_scale: float | None, seed: int, device: torch.device,
             precision: str, console: Console, description: str = "sampling",
             ) -> Iterator[tuple[Conditions, torch.Tensor]]:
    """Yield ``(conditions of the batch, video (B, 3, T, H, W) on the CPU)`` batch by batch.

    Noise comes from one generator seeded with ``seed``, so the same call gives the same clips.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(conditions)
    steps_per_batch = steps or system.schedule.num_train_steps
    batches = (n + batch_size - 1) // batch_size
    with progress(console, batches * steps_per_batch, description) as advance, torch.no_grad():
        for start in range(0, n, batch_size):
            part = conditions.chunk(start, min(n, start + batch_size))
            with autocast(device, precision):
                video = system.sample(
                    len(part),
                    labels=torch.tensor(part.labels, device=device),
                    fps=torch.tensor(part.fps, device=device),
                    steps=steps, sampler=sampler, guidance_scale=guidance_scale,
                    generator=generator, progress=lambda i, total: advance(1),
                )
            yield part, video.float().clamp(-1, 1).cpu()

"""Stage ``latents``: encode the training set once with the frozen tokenizer and cache it."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from vqvdm_core.errors import WorkFailure
from vqvdm_core.pipeline.conditions import field_values
from vqvdm_core.pipeline.context import LATENTS_FILE, RunContext
from vqvdm_core.pipeline.latent_cache import condition_fields, save_latents
from vqvdm_core.pipeline.stage import Stage
from vqvdm_core.runtime.devices import autocast
from vqvdm_core.runtime.progress import progress


STAGE = Stage("latents", upstream="tokenizer", hash_paths=("latents", "data.train"), main_process_only=True,
              reads=("data.train",), module=__name__)


def run(ctx: RunContext) -> dict[str, Any]:
    from vqvdm_core.data.collate import collate_clips

    settings = ctx.recipe.latents
    tokenizer = ctx.tokenizer()
    dataset = ctx.dataset("train")
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=settings.num_workers,
                        collate_fn=collate_clips, pin_memory=ctx.device.type == "cuda")  # pinned: async copies
    latents, fps, labels = [], [], []
    fields: dict[str, list[torch.Tensor]] = {}
    encode_seconds = 0.0
    total = settings.epochs * len(loader)
    with progress(ctx.console, total, "latents") as advance, torch.no_grad():
        for epoch in range(settings.epochs):
            # Random clip positions differ per pass but are reproducible from the seed.
            torch.manual_seed(ctx.recipe.seed * 1_000 + epoch)
            for batch in loader:
                video = batch["video"].to(ctx.device, non_blocking=True)
                start = time.perf_counter()
                with autocast(ctx.device, settings.precision):
                    z = tokenizer.encode(video)
                latents.append(z.float().cpu())  # waits for the encoder: the time below is its own
                encode_seconds += time.perf_counter() - start
                fps.append(batch["fps"])
                labels.append(batch["label"])
                for key, values in condition_fields(batch).items():
                    fields.setdefault(key, []).append(values)
                advance(1)
    latent = torch.cat(latents)
    fps_t, label_t = torch.cat(fps), torch.cat(labels)
    std = float(latent.std())
    if settings.scale == "auto" and not (math.isfinite(std) and std > 0):
        raise WorkFailure(
            f"the tokenizer's latents of the {latent.shape[0]} training clips have std {std}: "
            + ("every clip encodes to the same latent (a tokenizer that collapsed, or one trained too "
               "briefly for its quantizer to leave one code)" if std == 0 else "they are not finite")
            + ", so latents.scale cannot be measured. Train the tokenizer longer (train.tokenizer.steps, and "
            "--force), or set latents.scale in the recipe")
    scale = 1.0 / std if settings.scale == "auto" else float(settings.scale)
    # Every other per-clip field the data provides (a plug-in conditioner's "motion"...), if every batch had it.
    field_t = {k: torch.cat(v) for k, v in fields.items() if sum(len(x) for x in v) == latent.shape[0]}
    save_latents(ctx.run.stage_dir("latents") / LATENTS_FILE, latent, fps_t, label_t, field_t)
    info = {
        "count": int(latent.shape[0]),
        "latent_shape": list(latent.shape[1:]),
        "clip_shape": list(dataset.clip_shape),
        "num_classes": dataset.num_classes,
        "class_names": dataset.class_names or [],
        "fps_values": sorted({round(float(f), 4) for f in fps_t.tolist()}),
        "condition_values": {k: field_values(v.tolist()) for k, v in sorted(field_t.items())},
        "latent_std": std,
        "scale": scale,
        "encode_seconds_per_clip": encode_seconds / max(1, int(latent.shape[0])),
    }
    ctx.say(f"cached {info['count']} latents of shape {tuple(info['latent_shape'])} "
            f"(std {std:.3f}, scale {scale:.3f})")
    return info

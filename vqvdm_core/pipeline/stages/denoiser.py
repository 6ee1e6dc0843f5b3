"""Stage ``denoiser``: train the diffusion model on the cached latents, tokenizer frozen."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.pipeline.context import DENOISER_WEIGHTS, LATENTS_FILE, RunContext, write_json
from vqvdm_core.pipeline.generate import conditions_for
from vqvdm_core.pipeline.latent_cache import LatentDataset
from vqvdm_core.pipeline.stage import Stage
from vqvdm_core.pipeline.validation import MetricSet
from vqvdm_core.runtime.distributed import is_main


STAGE = Stage("denoiser", upstream="latents",
              hash_paths=("seed", "denoiser", "schedule", "conditioners", "train.denoiser"),
              reads=("data.val", "train.denoiser"), trains=("denoiser",), module=__name__)


def check_label_range(system: Any, data: LatentDataset, path: Any) -> None:
    """Every cached label within each class conditioner's range (``-1`` none, ``num_classes`` the null
    class), checked once here on the host: training on a GPU reads no label on the host per step."""
    from vqvdm_core.errors import UserError

    labels = data.label
    for conditioner in system.conditioners:
        classes = getattr(conditioner, "num_classes", None)
        if getattr(conditioner, "field", None) != "label" or classes is None or not labels.numel():
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < -1 or high > classes:
            raise UserError(f"{path}: the cached class labels run from {low} to {high}, but the class conditioner "
                            f"has {classes} classes (0..{classes - 1}; -1 for none): the latents were made from "
                            "other data; run the latents stage again (vqvdm run RECIPE --stage latents --force)")


def run(ctx: RunContext) -> dict[str, Any]:
    out = ctx.run.stage_dir("denoiser")
    settings = ctx.recipe.train.denoiser
    system = ctx.system(trained=False)
    meta = ctx.latents_meta()
    metrics = MetricSet(settings.val_metrics, ctx.device)
    conditions = cycle(meta, settings.val_clips, fps=ctx.recipe.sample.fps) if settings.val_clips else None

    def validate(model: nn.Module, step: int) -> dict[str, float]:
        if conditions is None:
            return {}
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.recipe.seed)
        video = model.sample(  # type: ignore[operator]
            len(conditions),
            conditions=conditions_for(system, conditions.tensors(ctx.device)),
            steps=ctx.recipe.sample.steps, sampler=ctx.recipe.sample.sampler, generator=generator,
        ).float().clamp(-1, 1)
        from vqvdm_core.io.video import write_grid

        path = write_grid(video.cpu(), out / "val" / f"samples_step{step:07d}.gif",
                          fps=float(conditions.fps[0]), nrow=min(len(conditions), 8), labels=conditions.captions)
        ctx.loggers.log_video("val/samples", path, step=step, stage="denoiser", fps=float(conditions.fps[0]))
        return metrics(fake=video, conditions=conditions.tensors())

    from vqvdm_core.engine import Trainer

    trainer = Trainer(system, settings, out_dir=out, device=ctx.device, seed=ctx.recipe.seed,
                      validate=validate, description="denoiser",
                      loggers=ctx.loggers)
    latents = ctx.run.stage_dir("latents") / LATENTS_FILE
    data = LatentDataset(latents)
    check_label_range(system, data, latents)
    result = trainer.fit(data)
    trainer.export_weights(out / DENOISER_WEIGHTS, ema=True)
    final = dict(result.final)
    if is_main():
        write_json(out / "metrics.json", final)
    ctx.say(f"denoiser trained for {result.step} steps -> {out / DENOISER_WEIGHTS}")
    return {"steps": result.step, "final": final}

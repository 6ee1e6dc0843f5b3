"""Stage ``sample``: a grid of generated clips for the requested classes and FPS values."""

from __future__ import annotations

from typing import Any

import torch

from vqvdm_core.pipeline.conditions import grid
from vqvdm_core.pipeline.context import RunContext, write_json
from vqvdm_core.pipeline.generate import generate
from vqvdm_core.pipeline.samples_file import save_samples
from vqvdm_core.pipeline.stage import Stage


STAGE = Stage("sample", upstream="denoiser", hash_paths=("sample", "guidance"), main_process_only=True,
              reads=("sample",), module=__name__)


def run(ctx: RunContext) -> dict[str, Any]:
    from vqvdm_core.io.video import video_grid, write_grid

    s = ctx.recipe.sample
    out = ctx.run.stage_dir("sample")
    meta = ctx.latents_meta()
    system = ctx.system(trained=True)
    conditions = grid(meta, labels=s.labels, fps=s.fps, per_condition=s.per_condition)
    videos = [v for _, v in generate(system, conditions, batch_size=s.batch_size, steps=s.steps,
                                     sampler=s.sampler, guidance_scale=s.guidance_scale,
                                     seed=ctx.recipe.seed, device=ctx.device, precision=s.precision,
                                     console=ctx.console)]
    video = torch.cat(videos)
    # One row per (label, every FPS value x per_condition): a row reads as one class.
    nrow = max(1, len(set(conditions.fps)) * s.per_condition)
    display_fps = max(conditions.fps)
    files = []
    for fmt in s.formats:
        path = out / f"grid.{fmt}"
        write_grid(video, path, fps=display_fps, nrow=nrow, labels=conditions.captions)
        files.append(path.name)
    if len(ctx.loggers):  # the experiment loggers get the GIF if there is one (TensorBoard shows it as it is)
        shown: Any = (out / ("grid.gif" if "gif" in s.formats else f"grid.{s.formats[0]}") if s.formats
                      else video_grid(video, nrow=nrow, labels=conditions.captions))
        ctx.loggers.log_video("grid", shown, step=ctx.denoiser_steps(), stage="sample", fps=display_fps)
    record: dict[str, Any] = {"labels": conditions.labels, "fps": conditions.fps, "captions": conditions.captions}
    if conditions.values:  # every other conditioner field, one value per clip
        record["conditions"] = conditions.values
    write_json(out / "conditions.json", record)
    save_samples(out / "samples.safetensors", video, conditions.labels, conditions.fps, conditions.values)
    ctx.say(f"wrote {len(conditions)} samples to {', '.join(str(out / f) for f in files)}")
    return {"files": files, "count": len(conditions)}

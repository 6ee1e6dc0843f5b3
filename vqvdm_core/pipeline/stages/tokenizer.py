"""Stage ``tokenizer``: train the video tokenizer (for the paper, the 3D VQGAN) on pixel clips."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vqvdm_core.interfaces import VideoTokenizer
from vqvdm_core.pipeline.context import TOKENIZER_WEIGHTS, RunContext, write_json
from vqvdm_core.pipeline.stage import Stage
from vqvdm_core.pipeline.validation import MetricSet, held_out_batch
from vqvdm_core.runtime.distributed import is_main


STAGE = Stage("tokenizer", upstream=None,
              hash_paths=("seed", "data.train", "data.val", "tokenizer", "train.tokenizer"),
              reads=("data.train", "data.val", "train.tokenizer"), trains=("tokenizer",), module=__name__)


def run(ctx: RunContext) -> dict[str, Any]:
    out = ctx.run.stage_dir("tokenizer")
    tokenizer: VideoTokenizer = ctx.recipe.tokenizer.build("tokenizer").to(ctx.device)
    if not tokenizer.trainable:
        ctx.say(f"tokenizer '{ctx.recipe.tokenizer.name}' has nothing to learn; stage skipped")
        return {"trained": False}
    tokenizer.train()
    settings = ctx.recipe.train.tokenizer
    val_videos = held_out_batch(ctx, settings.val_clips)
    metrics = MetricSet(settings.val_metrics, ctx.device)

    def validate(model: nn.Module, step: int) -> dict[str, float]:
        assert isinstance(model, VideoTokenizer)
        if val_videos is None:
            return {}
        video = val_videos.to(ctx.device)
        recon = model.decode(model.encode(video)).clamp(-1, 1)
        results = metrics(real=video, fake=recon)
        results["val/mse"] = float(torch.mean((recon - video) ** 2))
        from vqvdm_core.io.video import write_grid

        # Side by side: inputs in the first column, reconstructions in the second.
        pairs = torch.stack([video.cpu(), recon.cpu()], dim=1).flatten(0, 1)
        fps = float(ctx.dataset("val")[0]["fps"])
        labels = [t for _ in range(len(video)) for t in ("input", "recon")]
        for ext in ("mp4", "gif"):  # MP4 to watch, GIF for the report page
            write_grid(pairs, out / "val" / f"recon_step{step:07d}.{ext}", fps=fps, nrow=2, labels=labels)
        ctx.loggers.log_video("val/recon", out / "val" / f"recon_step{step:07d}.gif", step=step,
                              stage="tokenizer", fps=fps)
        return results

    from vqvdm_core.engine import Trainer

    trainer = Trainer(tokenizer, settings, out_dir=out, device=ctx.device, seed=ctx.recipe.seed,
                      validate=validate, description="tokenizer", loggers=ctx.loggers)
    result = trainer.fit(ctx.dataset("train"))
    trainer.export_weights(out / TOKENIZER_WEIGHTS, ema=True)
    final = dict(result.final)
    if is_main():
        write_json(out / "metrics.json", final)
    ctx.say(f"tokenizer trained for {result.step} steps -> {out / TOKENIZER_WEIGHTS}")
    return {"trained": True, "steps": result.step, "final": final}

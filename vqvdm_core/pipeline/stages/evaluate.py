"""Stage ``evaluate``: generate ``num_samples`` clips per guidance scale and score them."""

from __future__ import annotations

import time
from typing import Any

import torch
from rich.table import Table

from vqvdm_core.errors import UserError
from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.pipeline.context import RunContext, write_json
from vqvdm_core.pipeline.generate import generate
from vqvdm_core.progress import progress


def run(ctx: RunContext) -> dict[str, Any]:
    e = ctx.recipe.evaluate
    out = ctx.run.stage_dir("evaluate")
    if not e.metrics:
        raise UserError("evaluate.metrics is empty: name at least one metric in the recipe")
    meta = ctx.latents_meta()
    system = ctx.system(trained=True)
    metrics = {spec.name: spec.build("metric").to(ctx.device) for spec in e.metrics}
    scales = e.guidance_scales or [system.guidance.scale]
    conditions = cycle(meta, e.num_samples, fps=ctx.recipe.sample.fps)
    real_path = "data.val" if e.real == "val" and ctx.recipe.data.val else "data.train"
    real_identity = f"{real_path}-{ctx.recipe.hash(real_path)}"  # which clips form the real set
    for metric in metrics.values():
        metric.set_reference(real_identity)  # lets metrics cache real-set statistics across runs
    results = []
    for scale in scales:
        for metric in metrics.values():
            metric.reset()
        wanting = [m for m in metrics.values() if m.requires_real and m.needs_real]
        if wanting:
            feed_real(ctx, wanting, e.num_samples, e.batch_size)
        start = time.perf_counter()
        for part, video in generate(system, conditions, batch_size=e.batch_size, steps=e.steps,
                                    sampler=e.sampler, guidance_scale=scale, seed=ctx.recipe.seed + 1,
                                    device=ctx.device, precision=e.precision, console=ctx.console,
                                    description=f"evaluate w={scale:g}"):
            labels, fps = torch.tensor(part.labels), torch.tensor(part.fps)
            for metric in metrics.values():
                metric.update(fake=video.to(ctx.device), labels=labels, fps=fps)
        values = {name: m.compute() for name, m in metrics.items()}
        results.append({"guidance_scale": scale, "num_samples": len(conditions), "steps": e.steps,
                        "sampler": e.sampler or "default",
                        "seconds": round(time.perf_counter() - start, 2), "values": values})
    report = {
        "results": results,
        "protocol": {name: m.protocol() for name, m in metrics.items()},
        "real_set": e.real,
    }
    write_json(out / "metrics.json", report)
    ctx.console.print(metrics_table(report))
    return {"results": results}


def feed_real(ctx: RunContext, metrics: list[Any], count: int, batch_size: int) -> None:
    """Give ``metrics`` up to ``count`` real clips from the recipe's real set."""
    ds = ctx.dataset(ctx.recipe.evaluate.real)
    n = min(count, len(ds))
    with progress(ctx.console, n, "real clips") as advance:
        for start in range(0, n, batch_size):
            idx = range(start, min(n, start + batch_size))
            video = torch.stack([ds[i]["video"] for i in idx]).to(ctx.device)
            for metric in metrics:
                metric.update(real=video)
            advance(len(idx))


def metrics_table(report: dict[str, Any]) -> Table:
    table = Table(title="evaluation")
    table.add_column("guidance")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for res in report["results"]:
        for name, values in res["values"].items():
            for key, value in values.items():
                table.add_row(f"{res['guidance_scale']:g}", f"{name}/{key}", f"{value:.4g}")
    return table

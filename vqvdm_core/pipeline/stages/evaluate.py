"""Stage ``evaluate``: generate ``num_samples`` clips per guidance scale and score them.

Besides the recipe's metrics, each guidance scale records ``latent_std_ratio``: the generated
latents' standard deviation over the training latents' (from the latents stage). It should be near
1; outside ``[1/2, 2]`` the stage says so, since the sampler then left the data's scale (see
:class:`~vqvdm_core.pipeline.generate.LatentMoments`).

:func:`score_samples` scores clips already on disk (a ``samples.safetensors`` file) the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import Metric, update_metric
from vqvdm_core.interfaces.sampler import sampler_label, sampling_chain
from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.pipeline.context import LATENTS_FILE, RunContext, write_json
from vqvdm_core.pipeline.latent_cache import LatentDataset
from vqvdm_core.pipeline.generate import LatentMoments, generate
from vqvdm_core.pipeline.samples_check import check_samples
from vqvdm_core.pipeline.samples_file import load_samples_with_conditions
from vqvdm_core.pipeline.stage import Stage
from vqvdm_core.runtime.progress import progress

STAGE = Stage("evaluate", upstream="denoiser", hash_paths=("evaluate", "guidance", "data.val", "sample.fps"),
              main_process_only=True, reads=("data.train", "data.val", "evaluate"), module=__name__)


Batch = tuple  # video (B, 3, T, H, W), conditions (field -> (B,)) [, the unscaled latent (B, c, t, h, w)]


class _LatentTap:
    """Sees each generated latent before it is decoded: keeps the moments and the latest batch."""

    def __init__(self, moments: LatentMoments) -> None:
        self.moments = moments
        self.latest: torch.Tensor | None = None

    def update(self, latent: torch.Tensor) -> None:
        self.moments.update(latent)
        self.latest = latent.detach().float()


def run(ctx: RunContext, out: Path | None = None) -> dict[str, Any]:
    """The evaluate stage: generate and score; the report goes to ``out`` (default: the stage's
    ``metrics.json``, which only the stage itself writes)."""
    e = ctx.recipe.evaluate
    metrics = build_metrics(ctx)
    system = ctx.system(trained=True)
    conditions = cycle(ctx.latents_meta(), e.num_samples, fps=ctx.recipe.sample.fps)
    results = [generate_and_score(ctx, system, metrics, conditions, guidance_scale=scale, sampler=e.sampler,
                                  steps=e.steps)
               for scale in e.guidance_scales or [system.guidance.scale]]
    return _write_report(ctx, metrics, results, out or ctx.run.stage_dir("evaluate") / "metrics.json")


def generate_and_score(ctx: RunContext, system: Any, metrics: dict[str, Metric], conditions: Any, *,
                       guidance_scale: float, sampler: Any, steps: int | None) -> dict[str, Any]:
    """Generate a clip for each of ``conditions`` with ``sampler`` at ``guidance_scale`` (noise
    seeded with the recipe's seed + 1, as the evaluate stage) and score them: one result record."""
    e = ctx.recipe.evaluate
    meta = ctx.latents_meta()
    built = system.resolve_sampler(sampler)
    start = time.perf_counter()
    moments = LatentMoments()
    tap = _LatentTap(moments)
    batches = ((video, part.tensors(), tap.latest) for part, video in generate(
        system, conditions, batch_size=e.batch_size, steps=steps, sampler=built,
        guidance_scale=guidance_scale, seed=ctx.recipe.seed + 1, device=ctx.device, precision=e.precision,
        console=ctx.console, description=f"evaluate w={guidance_scale:g}", latent_moments=tap,
        out_device=ctx.device))  # scored where they were made
    values = _score(ctx, metrics, batches)
    result = {"guidance_scale": guidance_scale, "num_samples": len(conditions), "steps": steps,
              "sampler": sampler_label(sampler, schedule=system.schedule),
              "denoiser_calls": built.evaluations(len(sampling_chain(built, system.schedule, steps))),
              "seconds": round(time.perf_counter() - start, 2), "values": values}
    if meta.get("latent_std"):
        ratio = moments.std / float(meta["latent_std"])
        result["latent_std_ratio"] = float(f"{ratio:.4g}")
        if not 0.5 <= ratio <= 2.0:
            ctx.say(f"warning: w={guidance_scale:g}: the generated latents' std is {ratio:.2f}x the training "
                    "latents'; the samples are off the data's scale (for an epsilon model, try "
                    "schedule.clip_x0 or denoiser.prediction_type: v)")
    return result


def score_samples(ctx: RunContext, path: Path, out: Path) -> dict[str, Any]:
    """Score the clips of a samples file with the recipe's ``evaluate.metrics``; write ``out``. A
    file whose clips cannot be scored is refused before any metric is built or anything written."""
    video, conditions = load_samples_with_conditions(path)
    check_samples(path, video, conditions)
    metrics = build_metrics(ctx)
    bs = ctx.recipe.evaluate.batch_size
    batches = ((video[i:i + bs], {k: v[i:i + bs] for k, v in conditions.items()})
               for i in range(0, len(video), bs))
    start = time.perf_counter()
    values = _score(ctx, metrics, batches)
    results = [{"samples": str(path), "num_samples": len(video),
                "seconds": round(time.perf_counter() - start, 2), "values": values}]
    return _write_report(ctx, metrics, results, out)


def build_metrics(ctx: RunContext) -> dict[str, Metric]:
    """The recipe's ``evaluate.metrics``, on the run's device, told which real set they score against."""
    e = ctx.recipe.evaluate
    if not e.metrics:
        raise UserError("evaluate.metrics is empty: name at least one metric in the recipe")
    metrics = {spec.name: spec.build("metric").to(ctx.device) for spec in e.metrics}
    real_path = "data.val" if e.real == "val" and ctx.recipe.data.val else "data.train"
    identity = f"{real_path}-{ctx.recipe.hash(real_path)}"  # names the real set for cached statistics
    for metric in metrics.values():
        metric.set_reference(identity)
    return metrics


def _score(ctx: RunContext, metrics: dict[str, Metric], batches: Iterable[Batch]) -> dict[str, Any]:
    """Reset ``metrics``, feed them real clips if they still need them, then every batch."""
    for metric in metrics.values():
        metric.reset()
    wanting = [m for m in metrics.values() if m.requires_real and m.needs_real]
    if [m for m in wanting if m.inputs != "latent"]:
        _feed_real(ctx, [m for m in wanting if m.inputs != "latent"])
    if [m for m in wanting if m.inputs == "latent"]:
        _feed_real_latents(ctx, [m for m in wanting if m.inputs == "latent"])
    encoder = None
    for video, conditions, *rest in batches:
        latent = rest[0] if rest else None
        for metric in metrics.values():
            if metric.inputs == "latent":
                if latent is None:  # clips of a samples file: encoded with the run's tokenizer
                    encoder = encoder or ctx.system(trained=True).tokenizer
                    with torch.no_grad():
                        latent = encoder.encode(video.to(ctx.device).float()).float()
                update_metric(metric, fake=latent.to(ctx.device), conditions=conditions)
            else:
                update_metric(metric, fake=video.to(ctx.device), conditions=conditions)
    return {name: m.compute() for name, m in metrics.items()}


def _feed_real_latents(ctx: RunContext, metrics: list[Metric]) -> None:
    """Give latent ``metrics`` up to ``evaluate.num_samples`` cached training latents (unscaled)."""
    ds = LatentDataset(ctx.run.stage_dir("latents") / LATENTS_FILE)
    n = min(ctx.recipe.evaluate.num_samples, len(ds))
    bs = ctx.recipe.evaluate.batch_size
    for start in range(0, n, bs):
        latent = torch.stack([torch.as_tensor(ds[i]["latent"]) for i in range(start, min(n, start + bs))])
        for metric in metrics:
            metric.update(real=latent.float().to(ctx.device))


def _feed_real(ctx: RunContext, metrics: list[Metric]) -> None:
    """Give ``metrics`` up to ``evaluate.num_samples`` clips of the recipe's real set."""
    e = ctx.recipe.evaluate
    ds = ctx.dataset(e.real)
    n = min(e.num_samples, len(ds))
    with progress(ctx.console, n, "real clips") as advance:
        for start in range(0, n, e.batch_size):
            idx = range(start, min(n, start + e.batch_size))
            video = torch.stack([ds[i]["video"] for i in idx]).to(ctx.device)
            for metric in metrics:
                metric.update(real=video)
            advance(len(idx))


def _write_report(ctx: RunContext, metrics: dict[str, Metric], results: list[dict[str, Any]],
                  out: Path) -> dict[str, Any]:
    report = {"results": results, "protocol": {name: m.protocol() for name, m in metrics.items()},
              "real_set": ctx.recipe.evaluate.real}
    write_json(out, report)
    _log_results(ctx, results)
    ctx.console.print(metrics_table(report))
    return {"results": results}


def _log_results(ctx: RunContext, results: list[dict[str, Any]]) -> None:
    """Every number of ``results`` to the experiment loggers, as stage ``evaluate`` at the denoiser's
    trained steps: ``w=<guidance scale>/<metric>/<key>`` (``<metric>/<key>`` for a samples file)."""
    step = ctx.denoiser_steps()
    for res in results:
        scale = res.get("guidance_scale")
        prefix = "" if scale is None else f"w={scale:g}/"
        values = {f"{prefix}{name}/{key}": value for name, computed in res["values"].items()
                  for key, value in computed.items()}
        if "latent_std_ratio" in res:
            values[f"{prefix}latent_std_ratio"] = res["latent_std_ratio"]
        ctx.loggers.log_scalars(values, step=step, stage="evaluate")


def metrics_table(report: dict[str, Any]) -> Table:
    table = Table(title="evaluation")
    table.add_column("guidance")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for res in report["results"]:
        scale = res.get("guidance_scale")
        shown_scale = "-" if scale is None else f"{scale:g}"
        for name, values in res["values"].items():
            for key, value in values.items():
                shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
                table.add_row(shown_scale, f"{name}/{key}", shown)
        if "latent_std_ratio" in res:
            table.add_row(shown_scale, "latent_std_ratio", f"{res['latent_std_ratio']:.4g}")
    return table

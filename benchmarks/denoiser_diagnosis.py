"""Where a trained run's denoiser fails: sample scale, use of the conditions, and the noise level
at which the motion is lost.

Three measurements on a run directory with trained tokenizer, latents and denoiser stages::

    python benchmarks/denoiser_diagnosis.py runs/quickstart [--clips 48] [--clip-x0 3]

1. **Scale**: the standard deviation of generated latents (the recipe's sampler, 20 steps, guided
   at the recipe's scale) against the cached training latents (both unscaled), and the std of the
   x0 estimate at every step of the chain (scaled units, where the training latents have std 1).
   Samples far off the data's scale decode to saturated colours whatever the denoiser learned: with
   epsilon prediction, a small error at the noisiest steps is divided by ``sqrt(abar_t)`` (0.006 at
   t = 999 on the linear schedule) in the x0 estimate.
2. **Conditioning**: the denoising loss on held-out latents with their true class, a wrong class,
   the null class, and shuffled FPS values, at several time steps. Equal losses mean the denoiser
   ignores the condition.
3. **Where motion is lost** (SDEdit): real held-out clips are encoded, noised to time step ``t``,
   denoised back with the recipe's sampler (20 steps, started mid-chain) and scored with the recipe's
   ``motion_probe``. ``t = 0`` is the tokenizer's ceiling; the ``t`` at which class accuracy and
   FPS-speed correlation fall is where the denoiser stops carrying the motion.

``--clip-x0`` clamps the x0 estimates while sampling (the schedule's ``clip_x0``) for parts 1 and 3.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from _common import REPO  # noqa: F401  (puts the repository on sys.path)
from vqvdm_core.interfaces.sampler import SamplerStep
from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.context import LATENTS_FILE
from vqvdm_core.pipeline.latent_cache import LatentDataset

TIME_STEPS = (50, 200, 400, 600, 800, 950)
SDEDIT_STEPS = (0, 105, 315, 526, 736, 946)  # kept steps of a 20-step respaced chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory with a trained denoiser stage")
    parser.add_argument("--clips", type=int, default=48, help="held-out clips (and samples) per measurement")
    parser.add_argument("--clip-x0", type=float, default=None, help="clamp x0 estimates while sampling")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    run = open_run(args.run)
    system = run.system(trained=True).eval()
    if args.clip_x0 is not None:
        system.schedule.config = system.schedule.config.model_copy(update={"clip_x0": args.clip_x0})
    probe_spec = next(m for m in run.recipe.evaluate.metrics if m.name == "motion_probe")
    n = args.clips
    val = run.dataset("val")
    items = [val[i] for i in range(min(n, len(val)))]
    video = torch.stack([item["video"] for item in items]).to(run.device)
    labels = torch.tensor([item["label"] for item in items], device=run.device)
    fps = torch.tensor([float(item["fps"]) for item in items], device=run.device)
    num_classes = int(run.latents_meta()["num_classes"])

    def probe(clips: torch.Tensor) -> dict[str, float]:
        metric = probe_spec.build("metric")
        metric.update(fake=clips.cpu(), labels=labels.cpu(), fps=fps.cpu())
        values = metric.compute()
        return {k: round(float(values[k]), 3) for k in
                ("class_accuracy", "fps_speed_spearman", "mean_speed_px", "persistence")}

    # The recipe's sampler over a 20-step respaced chain, guided at the recipe's scale, started at
    # time step ``start`` (the last training step: pure noise), through the sampler interface's
    # mid-chain start; the callback records the x0 estimates' std per level (scaled units).
    schedule = system.schedule
    kept = schedule.timesteps(20).tolist()
    sampler = run.recipe.sample.sampler

    def denoise(x: torch.Tensor, start: int) -> tuple[torch.Tensor, dict[str, float]]:
        trace: dict[str, float] = {}

        def record(step: SamplerStep) -> None:
            trace[str(step.timestep)] = round(float(step.x0.std()), 3)

        z = system.sample(len(x), labels=labels, fps=fps, steps=20, sampler=sampler, x_t=x, start_step=start,
                          generator=torch.Generator().manual_seed(3), callback=record, decode=False)
        return z, trace  # unscaled latents

    report: dict[str, object] = {"run": str(args.run), "clips": len(items), "clip_x0": args.clip_x0}
    with torch.no_grad():
        # 1. Scale of generated latents against the training latents, and the x0 estimates' std
        # along the sampling chain (scaled units: the training latents have std 1 there).
        cached = LatentDataset(run.run.stage_dir("latents") / LATENTS_FILE).latent.float()
        noise = torch.randn((len(items), *system.latent_shape), generator=torch.Generator().manual_seed(0))
        sampled, x0_std = denoise(noise.to(run.device), kept[-1])
        report["scale"] = {"data_latent_std": round(float(cached.std()), 4),
                           "sample_latent_std": round(float(sampled.std()), 4),
                           "x0_estimate_std_by_t": x0_std,
                           "sample_probe": probe(system.decode(sampled))}

        # 2. Does the denoiser use the conditions? Loss per time step under altered conditions.
        z0 = system.tokenizer.encode(video).float() * system.latent_scale
        gen = torch.Generator().manual_seed(1)
        conditions = {
            "true": {"label": labels, "fps": fps},
            "wrong_class": {"label": (labels + 1) % num_classes, "fps": fps},
            "null_class": {"label": torch.full_like(labels, num_classes), "fps": fps},
            "shuffled_fps": {"label": labels, "fps": fps[torch.randperm(len(fps), generator=gen)]},
        }
        losses = {}
        for step in TIME_STEPS:
            t = torch.full((len(items),), step, device=run.device)
            noise = torch.randn(z0.shape, generator=gen).to(run.device)
            z_t = system.schedule.add_noise(z0, noise, t)
            target = system.schedule.training_target(z0, noise, t, system.denoiser.prediction_type)
            losses[str(step)] = {
                name: round(float(((system.denoiser(z_t, t, system.embed(fields, mode="cond")) - target) ** 2)
                                  .mean()), 5)
                for name, fields in conditions.items()}
        report["loss_by_condition"] = losses

        # 3. SDEdit: noise real latents to t, denoise back, probe the motion.
        sdedit = {}
        for start in SDEDIT_STEPS:
            first = max(i for i, k in enumerate(kept) if k <= start)
            x = schedule.add_noise(z0, torch.randn(z0.shape, generator=torch.Generator().manual_seed(2))
                                   .to(run.device), torch.full((len(items),), kept[first], device=run.device))
            z, _ = denoise(x, kept[first])
            sdedit[str(kept[first])] = probe(system.decode(z))
        report["sdedit_probe"] = sdedit
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

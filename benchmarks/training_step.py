"""Training-step time of both stages at the paper's shapes, and what the latent cache saves.

    python benchmarks/training_step.py                    # denoiser step with / without the cache
    python benchmarks/training_step.py --tokenizer        # + the VQGAN's step (slow on a CPU)
    python benchmarks/training_step.py --set denoiser.channels=64 --batch 4 --out results/train.json
    python benchmarks/training_step.py --device cuda --precision bf16 --batch 8 --tokenizer --tokenizer-batch 4

* ``denoiser (cached latents)``: the denoiser stage as the pipeline runs it, one
  ``LatentVideoDiffusion.training_step`` on a batch of cached latents (``"latent"``), backward and
  an AdamW step. The tokenizer is not run at all.
* ``denoiser (from video)``: the same step on a batch of 16x128x128 clips (``"video"``): the frozen
  tokenizer encodes them first, every step. The difference is what the ``latents`` stage's cache
  saves per step.
* ``tokenizer`` (``--tokenizer``): one VQGAN step (Eq. 5), generator then discriminator, with the
  GAN terms on (the step after ``discriminator_start``; ``--tokenizer-step 0`` times a step before
  the switch-on instead). LPIPS runs with a random VGG backbone
  (``perceptual_pretrained=false``): the same compute as the ImageNet one, no weight file needed.

Weights are random; timing does not depend on them. Times are interleaved and reported as medians
with the load average (other processes share this machine).
"""

from __future__ import annotations

from typing import Any

import torch

from _common import apply_machine_options, paper_recipe_parser, paper_system, conditions, interleaved, say, write_json
from vqvdm_core.profiling.measure import count_flops, peak_memory, summary
from vqvdm_core.runtime.devices import autocast


def optimizer_step(groups: dict[str, list[torch.nn.Parameter]]) -> dict[str, torch.optim.Optimizer]:
    return {name: torch.optim.AdamW(params, lr=1e-5) for name, params in groups.items() if params}


def run_step(model: Any, optimizers: dict[str, torch.optim.Optimizer], batch: dict[str, Any], step: int,
             precision: str = "fp32") -> None:
    """Every group's loss, backward and optimizer step in order, as the engine does (the forward
    under ``precision``'s autocast, as the trainer runs it)."""
    with autocast(batch_device(batch), precision):
        result = model.training_step(batch, step=step)
    names = list(result.losses)
    for i, name in enumerate(names):
        optimizers[name].zero_grad(set_to_none=True)
        if result.losses[name].requires_grad:  # a discriminator before its switch-on has no graph
            result.losses[name].backward(retain_graph=i < len(names) - 1)
        optimizers[name].step()


def batch_device(batch: dict[str, Any]) -> torch.device:
    return next(v.device for v in batch.values() if isinstance(v, torch.Tensor))


def main() -> None:
    parser = paper_recipe_parser(__doc__, repeats=2)
    parser.add_argument("--batch", type=int, default=2, help="denoiser-stage batch")
    parser.add_argument("--tokenizer", action="store_true", help="also time the tokenizer stage's step")
    parser.add_argument("--tokenizer-batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="autocast of the forward passes (the recipe's train.<stage>.precision)")
    parser.add_argument("--tokenizer-step", type=int, default=None,
                        help="step index the tokenizer's step is timed at (default: discriminator_start, "
                             "GAN on; 0: before the switch-on, as a short run like the quickstart trains)")
    args = parser.parse_args()

    device = apply_machine_options(args)
    recipe, system, clip_shape = paper_system(args, "tokenizer.perceptual_pretrained=false", device)
    system.train()
    latent_shape = system.latent_shape
    n = args.batch
    labels = torch.zeros(n, dtype=torch.long, device=device)
    fps = torch.full((n,), 25.0, device=device)
    cached = {"latent": torch.randn(n, *latent_shape, device=device), "fps": fps, "label": labels}
    video = {"video": torch.rand(n, 3, *clip_shape, device=device) * 2 - 1, "fps": fps, "label": labels}
    denoiser_opt = optimizer_step(system.optimizer_groups())

    p = args.precision
    fns = {"denoiser_cached": lambda: run_step(system, denoiser_opt, cached, 0, p),
           "denoiser_from_video": lambda: run_step(system, denoiser_opt, video, 0, p)}
    results: dict[str, Any] = {"conditions": conditions(device), "clip_shape": list(clip_shape),
                               "latent_shape": list(latent_shape), "batch": n, "precision": p, "steps": {}}
    if args.tokenizer:
        tok = system.tokenizer.requires_grad_(True).train()
        tok_opt = optimizer_step(tok.optimizer_groups())
        start = (int(getattr(tok.config, "discriminator_start", 0)) if args.tokenizer_step is None
                 else args.tokenizer_step)
        tok_batch = {"video": torch.rand(args.tokenizer_batch, 3, *clip_shape, device=device) * 2 - 1}
        fns["tokenizer"] = lambda: run_step(tok, tok_opt, tok_batch, start, p)
        results["tokenizer_batch"] = args.tokenizer_batch
        results["tokenizer_step_index"] = start

    for name, fn in fns.items():
        with count_flops() as total:
            fn()  # also the warm-up
        with peak_memory(device) as memory:
            fn()  # the optimizer state exists now: the memory of a step in a running stage
        results["steps"][name] = {"flops": total(), "peak_memory_bytes": memory.bytes, "memory_method": memory.method}
        shown = f", peak memory {memory.bytes / 2**30:.2f} GiB" if memory.bytes is not None else ""
        say(f"{name}: {total() / 1e9:.0f} GFLOP per step{shown}")
    times = interleaved(fns, repeats=args.repeats, device=device, warmup=0, say=say)
    for name, row in results["steps"].items():
        median = summary(times[name])["median"]
        batch = args.tokenizer_batch if name == "tokenizer" else n
        row.update(seconds=summary(times[name]), clips_per_second=batch / median,
                   flops_per_second=row["flops"] / median)
    steps = results["steps"]
    results["cache_speedup"] = (steps["denoiser_from_video"]["seconds"]["median"]
                                / steps["denoiser_cached"]["seconds"]["median"])
    results["conditions_end"] = conditions(device)
    write_json(results, args.out)
    for name, row in steps.items():
        say(f"{name}: {row['seconds']['median']:.2f} s per step, {row['clips_per_second']:.2f} clips/s, "
            f"{row['flops_per_second'] / 1e9:.1f} GFLOP/s")
    say(f"latent cache: a denoiser step is {results['cache_speedup']:.1f}x faster than encoding the clips")


if __name__ == "__main__":
    main()

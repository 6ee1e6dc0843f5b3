"""Sampling time per video of the recipe's latent system, for several clips sampled together.

    python benchmarks/sampling_time.py                          # 1 and 4 clips, 100 steps, paper recipe
    python benchmarks/sampling_time.py --num 1 2 8 --steps 25 --out results/sampling.json

Each pass samples ``num`` clips (guided: the denoiser sees ``2 x num``) with ``steps`` steps and
decodes them; reported per video: total, denoising, decoding, and the pass's peak memory. The
tokenizer decodes in chunks (``LatentVideoDiffusion.decode``: about one 16x128x128 clip at a time),
so decode memory does not grow with ``num``. ``vqvdm bench`` compares with pixel space; this script
shows how batching amortises the per-step cost. Random weights; times are medians of
``--repeats`` passes.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from _common import apply_machine_options, paper_recipe_parser, paper_system, conditions, say, write_json
from vqvdm_core.profiling.measure import SamplingTimer


def main() -> None:
    parser = paper_recipe_parser(__doc__, repeats=1)
    parser.add_argument("--num", type=int, nargs="+", default=[1, 4], help="clips per pass")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    device = apply_machine_options(args)
    # Only decoding is used: no loss network is needed to time sampling.
    recipe, system, clip_shape = paper_system(args, "tokenizer.perceptual_weight=0", device)
    system.eval()
    fps = float(recipe.sample.fps[0]) if recipe.sample.fps else 25.0
    results: dict[str, Any] = {"conditions": conditions(device), "clip_shape": list(clip_shape),
                               "steps": args.steps, "passes": []}
    for num in args.num:
        timer = SamplingTimer("latent", system, num=num, steps=args.steps, timed_steps=args.steps,
                              device=device, precision="fp32", seed=0, fps=fps)
        timer.probe()  # warm-up at this batch size
        memory = None
        for r in range(args.repeats):
            measured = timer.time_once()
            memory = memory or measured
            say(f"{num} clips, repeat {r + 1}/{args.repeats}: {timer.totals[-1]:.1f} s")
        total = statistics.median(timer.totals)
        decode = statistics.median(timer.decode_times)
        results["passes"].append({
            "clips": num, "denoiser_batch": num * (2 if timer.guided else 1),
            "seconds_per_pass": total, "seconds_per_video": total / num,
            "denoising_seconds_per_video": (total - decode) / num, "decode_seconds_per_video": decode / num,
            "step_seconds_median": statistics.median(timer.step_times),
            "peak_memory_bytes": memory.bytes if memory else None,
            "peak_memory_method": memory.method if memory else None,
        })
    results["conditions_end"] = conditions(device)
    write_json(results, args.out)
    for row in results["passes"]:
        mem = row["peak_memory_bytes"]
        say(f"{row['clips']} clips: {row['seconds_per_video']:.1f} s per video "
            f"({row['denoising_seconds_per_video']:.1f} denoising + {row['decode_seconds_per_video']:.1f} "
            f"decoding), peak memory {mem / 2**30:.2f} GiB" if mem is not None else "")


if __name__ == "__main__":
    main()

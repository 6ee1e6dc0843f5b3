"""Quality against denoiser calls, per sampler, on a trained run (the quickstart's motion probe).

    python benchmarks/sampler_quality.py runs/quickstart \
        --sampler ddpm --sampler ddim --sampler dpmpp_2m --sampler dpmpp_2m:spacing=log_snr \
        --steps 5 10 20 50 100 --out sampler_quality.json

For every sampler and step count it generates the evaluate stage's clips (``evaluate.num_samples``
conditions cycling over the classes and FPS values, noise seeded as the stage seeds it) at guidance
scale ``--guidance`` (default: the recipe's) and scores them with the recipe's evaluate metrics,
exactly as ``vqvdm evaluate RUN --sampler NAME --steps N`` would, without touching the run's files.
A sampler is ``NAME`` or ``NAME:option=value,option=value`` (values parsed as YAML).

Reports, per point: denoiser calls per clip (a guided pair counts once), motion-probe class
accuracy, |Spearman(FPS, speed)|, ``latent_std_ratio`` and the seconds it took. Writes JSON after
every point (``--out``) and prints a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from _common import REPO, conditions  # noqa: F401  (puts the repository on sys.path)
from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.pipeline.stages.evaluate import build_metrics, generate_and_score


def parse_sampler(text: str) -> dict[str, Any]:
    """``dpmpp_2m:spacing=log_snr`` -> ``{"name": "dpmpp_2m", "spacing": "log_snr"}``."""
    name, _, rest = text.partition(":")
    node: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"sampler option '{item}' is not key=value")
        node[key.strip()] = yaml.safe_load(value)
    return node


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in flags.split() if f in wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory with a trained denoiser stage")
    parser.add_argument("--sampler", action="append", default=[], help="NAME or NAME:opt=value,... (repeatable)")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file, rewritten after every point")
    args = parser.parse_args()

    ctx = open_run(args.run)
    system = ctx.system(trained=True)
    metrics = build_metrics(ctx)
    scale = args.guidance if args.guidance is not None else system.guidance.scale
    clips = cycle(ctx.latents_meta(), ctx.recipe.evaluate.num_samples, fps=ctx.recipe.sample.fps)
    samplers = [parse_sampler(s) for s in args.sampler] or [{"name": "dpmpp_2m"}]
    report: dict[str, Any] = {"run": str(args.run), "guidance_scale": scale, "num_samples": len(clips),
                              "machine": {**conditions(ctx.device), "cpu": platform.processor() or platform.machine(),
                                          "cpu_flags": cpu_flags()},
                              "points": []}
    for node in samplers:
        for steps in args.steps:
            start = time.perf_counter()
            result = generate_and_score(ctx, system, metrics, clips, guidance_scale=scale, sampler=node,
                                        steps=steps)
            probe = result["values"].get("motion_probe", {})
            point = {"sampler": result["sampler"], "steps": steps, "denoiser_calls": result["denoiser_calls"],
                     "class_accuracy": probe.get("class_accuracy"),
                     "abs_spearman": abs(probe["fps_speed_spearman"]) if "fps_speed_spearman" in probe else None,
                     "latent_std_ratio": result.get("latent_std_ratio"),
                     "seconds": round(time.perf_counter() - start, 1), "values": result["values"]}
            report["points"].append(point)
            print(json.dumps({k: v for k, v in point.items() if k != "values"}), flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=1))
    print()
    print("| sampler | steps | denoiser calls | class accuracy (w = %g) | abs Spearman(FPS, speed) | "
          "latent std ratio | seconds |" % scale)
    print("|---|---|---|---|---|---|---|")
    for p in report["points"]:
        print(f"| {p['sampler']} | {p['steps']} | {p['denoiser_calls']} | {_pct(p['class_accuracy'])} | "
              f"{_num(p['abs_spearman'])} | {_num(p['latent_std_ratio'])} | {p['seconds']} |")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()

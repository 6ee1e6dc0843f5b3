"""DDPM, flow matching and EDM on the same network, data and tokenizer (issue 29).

    .venv/bin/python benchmarks/objectives.py [--base RUN] [--out-dir /tmp/vqvdm-objectives] \
        [--objectives ddpm flow edm] [--calls 1 2 4 8]

``ddpm`` is the quickstart as it is (``benchmarks/quickstart.py`` runs it, or ``--base`` names a
finished quickstart run). ``flow`` and ``edm`` copy that run's tokenizer and latents stages and
train the same U-Net for the same steps, batch, optimiser and EMA on their own path:

* ``flow``: rectified flow with SD3's logit-normal ``t`` (m = 0, s = 1), no shift, velocity target;
* ``edm``: Karras et al.'s log-normal sigma (P_mean -1.2, P_std 1.2), sigma_data 1 (the latents
  are scaled to unit std), the preconditioned x0 parameterisation and the EDM loss weight.
* ``flow_noisy`` / ``edm_noisy``: the same paths with the training draw centred where the DDPM
  recipe centres it (log-SNR about -2): logit t ~ N(1, 1), ln sigma ~ N(1, 1);
  ``edm_noisy_t250``: that EDM with ``time_scale: 250`` (c_noise over the U-Net's time embedding).

``--sampler NAME[:field=value,...]`` scores only those samplers, ``--no-train`` re-scores the
denoisers already in ``--out-dir``, ``--tag`` names the JSON (``objectives{tag}.json``).

Each trained denoiser is then sampled at 1, 2, 4 and 8 denoiser calls per clip (a guided pair
counts once, a second-order step its two calls) with each of its schedule's samplers, 256 clips at
w = 3 conditioned as the evaluate stage conditions them, and scored with the quickstart's motion
probe (class accuracy, |Spearman(FPS, speed)|, persistence), the latent std ratio and ``latent_fd``
(against the training latents; also reported: two halves of the training latents against each
other, the floor of the number at this clip count). Writes ``objectives.json`` in ``--out-dir``
and prints a Markdown table. Quality numbers are deterministic on one machine; the seconds are
not, so nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import REPO, conditions  # noqa: F401  (puts the repository on sys.path)
from sampler_quality import cpu_flags, parse_sampler
from vqvdm_core import create
from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.pipeline.context import LATENTS_FILE
from vqvdm_core.pipeline.latent_cache import LatentDataset
from vqvdm_core.pipeline.stages.evaluate import build_metrics, generate_and_score

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
RECIPE_SAMPLER = {"name": "dpmpp_2m", "eta": 1.0, "spacing": "trailing"}

OBJECTIVES: dict[str, dict[str, Any]] = {
    "ddpm": {"sets": {}, "samplers": [RECIPE_SAMPLER, {"name": "unipc", "spacing": "trailing"},
                                      {"name": "ddim", "spacing": "trailing"}]},
    "flow": {"sets": {"schedule": {"name": "flow", "train_time": "logit_normal"},
                      "denoiser.prediction_type": "velocity"},
             "samplers": [{"name": "euler"}, {"name": "heun"}, {"name": "dpmpp_2m"}, {"name": "dpmpp_2m", "eta": 1.0},
                          {"name": "unipc"}, {"name": "euler", "spacing": "trailing"},
                          {"name": "dpmpp_2m", "eta": 1.0, "spacing": "trailing"}]},
    "edm": {"sets": {"schedule": {"name": "edm"}, "denoiser.prediction_type": "x0"},
            "samplers": [{"name": "heun"}, {"name": "euler"}, {"name": "dpmpp_2m"}, {"name": "dpmpp_2m", "eta": 1.0},
                         {"name": "unipc"}]},
    # The same paths with the training draw centred where the quickstart's DDPM recipe centres it
    # (log-SNR ~ -2, the noisy side, where this data's motion is decided): logit(t) ~ N(1, 1) for
    # flow (log-SNR = -2 logit t), ln sigma ~ N(1, 1) for EDM (log-SNR = -2 ln sigma).
    "flow_noisy": {"sets": {"schedule": {"name": "flow", "train_time": "logit_normal", "logit_mean": 1.0,
                                         "logit_std": 1.0}, "denoiser.prediction_type": "velocity"},
                   "samplers": [{"name": "euler", "spacing": "trailing"}, {"name": "euler"}, {"name": "heun"},
                                {"name": "dpmpp_2m", "eta": 1.0, "spacing": "trailing"}]},
    "edm_noisy": {"sets": {"schedule": {"name": "edm", "p_mean": 1.0, "p_std": 1.0}, "denoiser.prediction_type": "x0"},
                  "samplers": [{"name": "heun"}, {"name": "euler"}, {"name": "dpmpp_2m", "eta": 1.0}, {"name": "unipc"}]},
    # ... and with c_noise spread over the U-Net's time embedding as DDPM's steps are (x 250: about -390..270)
    "edm_noisy_t250": {"sets": {"schedule": {"name": "edm", "p_mean": 1.0, "p_std": 1.0, "time_scale": 250.0},
                                "denoiser.prediction_type": "x0"},
                       "samplers": [{"name": "heun"}, {"name": "euler"}, {"name": "dpmpp_2m", "eta": 1.0}]},
}


def train(objective: str, base: Path | None, out_dir: Path) -> Path:
    """The run of ``objective``: the quickstart itself for ddpm (unless ``base`` is given), else the
    base run's tokenizer and latents with this objective's denoiser trained on them."""
    run = out_dir / f"quickstart_{objective}"
    if objective == "ddpm":
        if base is not None:
            return base
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "quickstart.py"), "--run", str(run),
                        "--set", f"output_dir={out_dir}", "--set", f"name={run.name}"], cwd=REPO)
        return run
    assert base is not None
    run.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", "latents"):
        if not (run / stage).exists():
            shutil.copytree(base / stage, run / stage)
    sets = {"output_dir": str(out_dir), "name": run.name, **OBJECTIVES[objective]["sets"],
            "sample.sampler": OBJECTIVES[objective]["samplers"][0],
            "evaluate.sampler": OBJECTIVES[objective]["samplers"][0]}
    cmd = [sys.executable, "-m", "vqvdm_core", "run", str(QUICKSTART), "--stage", "denoiser",
           *[a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    (run / "denoiser_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return run


def steps_for(sampler: dict[str, Any], calls: int) -> int | None:
    """The chain length giving ``calls`` denoiser calls (None where the sampler cannot)."""
    built = create("sampler", sampler["name"], **{k: v for k, v in sampler.items() if k != "name"})
    for steps in range(1, calls + 1):
        if built.evaluations(steps) == calls:
            return steps
    return None


def real_floor(run: Path, clips: int) -> float:
    """latent_fd between two disjoint sets of ``clips`` training latents."""
    latents = LatentDataset(run / "latents" / LATENTS_FILE).latent.float()
    metric = create("metric", "latent_fd")
    metric.update(real=latents[:clips], fake=latents[clips:2 * clips])
    return metric.compute()["latent_fd"]


def score(run: Path, objective: str, calls: list[int], scale: float,
          samplers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    ctx = open_run(run)
    system = ctx.system(trained=True)
    metrics = build_metrics(ctx)
    metrics["latent_fd"] = create("metric", "latent_fd").to(ctx.device)
    clips = cycle(ctx.latents_meta(), ctx.recipe.evaluate.num_samples, fps=ctx.recipe.sample.fps)
    points = []
    for sampler in samplers or OBJECTIVES[objective]["samplers"]:
        for n in calls:
            steps = steps_for(sampler, n)
            if steps is None or (n in (3, 7) and steps == n):  # odd counts: for second-order samplers only
                continue
            start = time.perf_counter()
            result = generate_and_score(ctx, system, metrics, clips, guidance_scale=scale, sampler=sampler,
                                        steps=steps)
            probe = result["values"]["motion_probe"]
            point = {"objective": objective, "sampler": result["sampler"], "steps": steps,
                     "denoiser_calls": result["denoiser_calls"], "class_accuracy": probe["class_accuracy"],
                     "abs_spearman": abs(probe["fps_speed_spearman"]), "persistence": probe["persistence"],
                     "latent_std_ratio": result.get("latent_std_ratio"),
                     "latent_fd": result["values"]["latent_fd"]["latent_fd"],
                     "seconds": round(time.perf_counter() - start, 1)}
            print(json.dumps(point), flush=True)
            points.append(point)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="a finished quickstart run (the ddpm objective)")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/vqvdm-objectives"))
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--no-train", action="store_true", help="only score runs already in --out-dir")
    parser.add_argument("--sampler", action="append", default=[],
                        help="score only these samplers (NAME or NAME:opt=value,...; repeatable)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file (objectives<tag>.json)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = args.base
    report: dict[str, Any] = {"guidance_scale": args.guidance, "calls": args.calls, "objectives": {},
                              "machine": {**conditions(torch.device("cpu")), "cpu": platform.processor()
                                          or platform.machine(), "cpu_flags": cpu_flags()}, "points": []}
    if base is None and args.no_train:
        base = args.out_dir / "quickstart_ddpm"
    out = args.out_dir / f"objectives{args.tag}.json"
    chosen = [parse_sampler(text) for text in args.sampler] or None
    for objective in args.objectives:
        run = (base if objective == "ddpm" and base else args.out_dir / f"quickstart_{objective}") \
            if args.no_train else train(objective, base, args.out_dir)
        if objective == "ddpm":
            base = run
        seconds = run / "denoiser_seconds.txt"
        report["objectives"][objective] = {"run": str(run), "sets": OBJECTIVES[objective]["sets"],
                                           "denoiser_seconds": float(seconds.read_text()) if seconds.exists() else None}
        report["points"] += score(run, objective, args.calls, args.guidance, chosen)
        out.write_text(json.dumps(report, indent=1))
    clips = open_run(base).recipe.evaluate.num_samples
    report["real_floor_latent_fd"] = real_floor(base, clips)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nlatent_fd of two {clips}-clip halves of the training latents: {report['real_floor_latent_fd']:.4f}\n")
    print(f"| objective | sampler | steps | denoiser calls | class accuracy (w = {args.guidance:g}) | abs Spearman "
          "| persistence | latent std ratio | latent_fd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in report["points"]:
        print(f"| {p['objective']} | {p['sampler']} | {p['steps']} | {p['denoiser_calls']} | "
              f"{100 * p['class_accuracy']:.1f} % | {p['abs_spearman']:.3f} | {p['persistence']:.3f} | "
              f"{p['latent_std_ratio']:.3f} | {p['latent_fd']:.3f} |")
    print(f"cpu: {report['machine']}")


if __name__ == "__main__":
    main()

"""U-Net against transformer on the quickstart at a matched budget (issue 30).

    .venv/bin/python benchmarks/denoisers.py [--variants unet3d dit3d] [--out-dir /tmp/vqvdm-denoisers] [--long]

Each variant is the whole quickstart (``vqvdm run recipes/quickstart.yaml``, timed by
``benchmarks/quickstart.py``) with only the denoiser node swapped: the same data, tokenizer
training, latents, schedule, steps, batch, optimiser, EMA, sampler and evaluation.

* ``unet3d``: the quickstart's U-Net (32 channels, levels [1, 2], one residual block per level);
* ``dit3d``: Latte's variant 1 with causal temporal attention (the paper's), width 192, 6 blocks,
  6 heads, patch size 2 on the 8x8 latents, the U-Net's prediction type and frame conditioning.
  Its training step costs the same FLOPs as the U-Net's (measured below with
  ``torch.utils.flop_counter``, within 1 %); it has more parameters (4.2 M against 1.8 M), because
  a transformer spends its FLOPs on matmuls over few tokens where a U-Net spends them on
  convolutions over many positions.

Reports per variant: parameters, FLOPs of one training step at the recipe's batch, the quickstart's
targets (``benchmarks/quickstart.py``: class accuracy at w = 3 and 0, |Spearman(FPS, speed)|,
persistence, tokenizer PSNR, wall time <= 12 minutes), the latent std ratio and the stage times;
with ``--long`` also ``benchmarks/long_video.py`` (per-window class accuracy of 64-frame clips and
the direction kept by continuations). Writes ``denoisers.json`` in ``--out-dir`` and prints a
Markdown table. Nothing else may run on the machine meanwhile: the wall time is a target.

Settings side by side without retraining the tokenizer (wall time then leaves it out)::

    .venv/bin/python benchmarks/denoisers.py --variants dit3d --reuse /tmp/vqvdm-denoisers/quickstart_unet3d \
        --set train.denoiser.optimizer.lr=1e-3 --tag _lr1e-3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import REPO  # noqa: F401  (puts the repository on sys.path)
from vqvdm_core import create

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
DIT3D = {"name": "dit3d", "width": 192, "depth": 6, "heads": 6, "patch_size": 2, "variant": 1,
         "causal": True, "prediction_type": "v", "known_frames": 0.5}
VARIANTS: dict[str, dict[str, Any] | None] = {"unet3d": None, "dit3d": DIT3D}  # None: the quickstart's


def denoiser_node(variant: str) -> dict[str, Any]:
    return VARIANTS[variant] or yaml.safe_load(QUICKSTART.read_text())["denoiser"]


def step_cost(node: dict[str, Any]) -> dict[str, float]:
    """Parameters and FLOPs (forward + backward) of one training step at the quickstart's batch and
    latent shape (4 channels, 8 frames, 8 x 8)."""
    from torch.utils.flop_counter import FlopCounterMode

    recipe = yaml.safe_load(QUICKSTART.read_text())
    batch = recipe["train"]["denoiser"]["batch_size"]
    fields = {k: v for k, v in node.items() if k != "name"}
    denoiser = create("denoiser", node["name"], in_channels=4, **fields)
    x = torch.randn(batch, 4, 8, 8, 8)
    kwargs = {"known": torch.zeros(batch, 5, 8, 8, 8)} if fields.get("known_frames") else {}
    with FlopCounterMode(display=False) as counter:
        denoiser(x, torch.randint(0, 1000, (batch,)), torch.randn(batch, denoiser.emb_dim), **kwargs).square().mean().backward()
    return {"parameters": sum(p.numel() for p in denoiser.parameters()), "train_step_flops": counter.get_total_flops()}


def run_variant(variant: str, out_dir: Path, *, extra: list[str], reuse: Path | None, tag: str = "") -> Path:
    """The quickstart with the variant's denoiser, timed: ``benchmarks/quickstart.py`` runs it.
    ``reuse``: a finished quickstart run whose tokenizer and latents stages are copied in first (the
    stages then skip: their recipe hashes do not involve the denoiser), so only the denoiser side
    runs and the wall time leaves the tokenizer out."""
    name = f"quickstart_{variant}{tag}"
    if reuse is not None:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for stage in ("tokenizer", "latents"):
            if not (out_dir / name / stage).exists():
                shutil.copytree(reuse / stage, out_dir / name / stage)
    sets = [f"output_dir={out_dir}", f"name={name}", f"denoiser={json.dumps(denoiser_node(variant))}", *extra]
    cmd = [sys.executable, str(REPO / "benchmarks" / "quickstart.py"), "--run", str(out_dir / name),
           *[a for s in sets for a in ("--set", s)]]
    subprocess.run(cmd, cwd=REPO)  # exit 1 = a target missed: still scored below
    return out_dir / name


def scores(run: Path) -> dict[str, Any]:
    targets = json.loads((run / "targets.json").read_text())
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    by_scale = {r["guidance_scale"]: r for r in metrics["results"]}
    top = by_scale[max(by_scale)]
    return {"checks": {c["name"]: (c["value"], c["ok"]) for c in targets["checks"]},
            "latent_std_ratio": top.get("latent_std_ratio"), "stage_seconds": targets["stage_seconds"],
            "cpu": targets["cpu"]}


def long_video(run: Path, out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"{run.name}_long_video.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "long_video.py"), str(run), "--out", str(out)],
                   cwd=REPO, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/vqvdm-denoisers"))
    parser.add_argument("--long", action="store_true", help="also the long-video / continuation benchmark")
    parser.add_argument("--no-run", action="store_true", help="only score runs already in --out-dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override for every variant (e.g. train.denoiser.optimizer.lr=1e-3)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="a finished quickstart run: copy its tokenizer and latents, run the rest")
    parser.add_argument("--tag", default="", help="suffix of the run names (several settings side by side)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for variant in args.variants:
        results[variant] = {"denoiser": denoiser_node(variant), "overrides": args.overrides,
                            "reused": str(args.reuse) if args.reuse else None, **step_cost(denoiser_node(variant))}
    for variant in args.variants:
        run = (args.out_dir / f"quickstart_{variant}{args.tag}" if args.no_run else
               run_variant(variant, args.out_dir, extra=args.overrides, reuse=args.reuse, tag=args.tag))
        results[variant].update(scores(run))
        if args.long:
            results[variant]["long_video"] = long_video(run, args.out_dir)
        (args.out_dir / f"denoisers{args.tag}.json").write_text(json.dumps(results, indent=2, default=str))
    names = list(next(iter(results.values()))["checks"])
    print("| | " + " | ".join(args.variants) + " |\n|---|" + "---|" * len(args.variants))
    print("| parameters | " + " | ".join(f"{results[v]['parameters'] / 1e6:.2f} M" for v in args.variants) + " |")
    print("| GFLOP per training step | " + " | ".join(f"{results[v]['train_step_flops'] / 1e9:.1f}"
                                                    for v in args.variants) + " |")
    for name in names:
        cells = [f"{results[v]['checks'][name][0]:.4g}{'' if results[v]['checks'][name][1] else ' (missed)'}"
                 for v in args.variants]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| latent std ratio (w = 3) | " + " | ".join(f"{results[v]['latent_std_ratio']:.3f}" for v in args.variants) + " |")
    print("| stages (s) | " + " | ".join(", ".join(f"{k} {s:.0f}" for k, s in results[v]["stage_seconds"].items())
                                        for v in args.variants) + " |")
    print(f"cpu: {results[args.variants[0]]['cpu']}")


if __name__ == "__main__":
    main()

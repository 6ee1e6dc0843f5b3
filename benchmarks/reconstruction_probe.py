"""The motion probe on a trained tokenizer's reconstructions: the ceiling for generated clips.

A run's generated clips can only show motion its tokenizer can decode. This script encodes and
decodes held-out clips of the run's validation set with the run's trained tokenizer and scores the
real clips and their reconstructions with the recipe's ``motion_probe`` (true labels and FPS)::

    python benchmarks/reconstruction_probe.py runs/quickstart [--clips 96]

If the reconstructions already lose the direction or the speed, no denoiser can put it back.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from vqvdm_core.pipeline import open_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory with a trained tokenizer stage")
    parser.add_argument("--clips", type=int, default=96)
    args = parser.parse_args()
    run = open_run(args.run)
    tokenizer = run.tokenizer()  # the tokenizer stage's weights, frozen, in eval mode
    val = run.dataset("val")
    items = [val[i] for i in range(min(args.clips, len(val)))]
    real = torch.stack([item["video"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    fps = torch.tensor([float(item["fps"]) for item in items])
    with torch.no_grad():
        recon = tokenizer.decode(tokenizer.encode(real.to(run.device))).cpu().clamp(-1, 1)
    probe_spec = next(m for m in run.recipe.evaluate.metrics if m.name == "motion_probe")
    results: dict[str, dict[str, float]] = {}
    for name, clips in (("real", real), ("reconstruction", recon)):
        probe = probe_spec.build("metric")
        probe.update(fake=clips, labels=labels, fps=fps)
        results[name] = {k: round(float(v), 4) for k, v in probe.compute().items()}
    mse = float(((recon - real) ** 2).mean())
    # Peak-to-peak 2 in [-1, 1]; a lossless tokenizer (identity) reconstructs exactly.
    results["reconstruction"]["psnr"] = round(10 * math.log10(4.0 / mse), 2) if mse > 0 else "inf"
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

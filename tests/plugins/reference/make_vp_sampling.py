"""Writes ``vp_sampling.json``: what every built-in sampler returned on DDPM's variance-preserving
chains before chains held other Gaussian paths (run once with that version's code, kept as data).

The model is the exact denoiser of N(MU, S^2) data in float64, built from + - * / and sqrt only
(IEEE-exact on every CPU), and the states have 8 elements (torch draws fewer than 16 normals
element by element, with libm), so the numbers are the same on every machine:
``tests/plugins/test_gaussian_paths.py`` asks for them bit for bit.

    python tests/plugins/reference/make_vp_sampling.py   # from the repository root
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vqvdm_core import create
from vqvdm_core.interfaces.sampler import run_sampler

MU, S = 0.7, 0.3

CASES = [
    ("ddpm", {}), ("ddpm", {"variance": "beta"}), ("ddim", {}), ("ddim", {"eta": 0.5}), ("dpmpp_2m", {}),
    ("dpmpp_2m", {"eta": 1.0}), ("unipc", {}), ("unipc", {"variant": "bh1"}),
]
SPACINGS = ("uniform", "trailing", "karras", "log_snr")
PREDICTIONS = ("epsilon", "x0", "v")


def oracle(sched, prediction_type):
    def model_fn(x_t, t):
        abar = sched.alphas_cumprod[t].to(x_t.dtype).reshape(-1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x0 = MU + a * S**2 / (abar * S**2 + 1 - abar) * (x_t - a * MU)
        eps = (x_t - a * x0) / s
        return {"epsilon": eps, "x0": x0, "v": a * eps - s * x0}[prediction_type]
    return model_fn


def cases():
    for beta in ("linear", "cosine"):
        sched = create("schedule", "ddpm", beta_schedule=beta)
        for name, options in CASES:
            for spacing in SPACINGS:
                for kind in PREDICTIONS:
                    key = f"{beta}/{name}{options}/{spacing}/{kind}"
                    yield key, sched, create("sampler", name, spacing=spacing, **options), kind


def run(sched, sampler, kind):
    g = torch.Generator().manual_seed(3)
    x = torch.randn((8, 1), generator=g, dtype=torch.float64)
    out = run_sampler(sampler, oracle(sched, kind), sched, prediction_type=kind, x=x, steps=7, generator=g)
    return [float(v).hex() for v in out.flatten().tolist()]


if __name__ == "__main__":
    table = {key: run(sched, sampler, kind) for key, sched, sampler, kind in cases()}
    Path(__file__).with_name("vp_sampling.json").write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(f"{len(table)} cases")

"""vqvdm's flow and EDM samplers against the public implementations they follow (issue 29).

    pip install --target /tmp/peers diffusers==0.42.1 && pip install --no-deps --target /tmp/peers k-diffusion
    PYTHONPATH=/tmp/peers .venv/bin/python benchmarks/peer_samplers.py

Both peers live in their own folder, never in vqvdm's dependencies. On Gaussian data N(MU, S^2) the
exact denoiser is closed form, so every run uses the same model and the only difference is the
sampler's arithmetic:

* diffusers' ``FlowMatchEulerDiscreteScheduler`` and ``FlowMatchHeunDiscreteScheduler`` (SD3's
  samplers, with ``shift``) against vqvdm's ``euler`` and ``heun`` on the ``flow`` schedule, run on
  diffusers' own sigmas through ``schedule.chain_at``, and vqvdm's own chain against the exact ODE
  solution;
* k-diffusion's ``sample_euler`` and ``sample_heun`` on ``get_sigmas_karras`` (Karras et al.'s
  Algorithm 1 on the rho = 7 chain) against vqvdm's ``euler`` and ``heun`` on the ``edm`` schedule.

k-diffusion's ``sampling.py`` is loaded alone (its package imports training code and
dependencies a sampler does not need; only ``utils.append_dims`` and ``tqdm`` are used). Prints
the largest difference of each pair and each sampler's distance to the exact ODE solution.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import torch

from _common import REPO  # noqa: F401  (puts the repository on sys.path)
from vqvdm_core import create
from vqvdm_core.interfaces.sampler import run_sampler

MU, S = 0.7, 0.3
N = 4096


def exact_x0(x, alpha, sigma):
    """E[x0 | x] for N(MU, S^2) data on the level (alpha, sigma)."""
    return MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x - alpha * MU)


def oracle(schedule, prediction_type):
    """The exact denoiser as a raw network on ``schedule``'s path (given ``model_input(x)``)."""

    def model_fn(x_in, t):
        alpha, sigma = (v.reshape(-1, 1) for v in schedule.alpha_sigma(t))
        x = x_in / schedule.model_input(torch.ones_like(x_in), t)
        x0 = exact_x0(x, alpha, sigma)
        return schedule.training_target(x0, (x - alpha * x0) / sigma, t, prediction_type)

    return model_fn


def k_diffusion_sampling():
    """k-diffusion's ``sampling`` module, loaded on its own."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("k-diffusion is not importable: see the install line at the top of this file")
    folder = Path(list(spec.submodule_search_locations)[0])
    package = types.ModuleType("kd")
    package.__path__ = [str(folder)]
    utils = types.ModuleType("kd.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules.update({"kd": package, "kd.utils": utils})
    for missing in ("torchdiffeq", "torchsde"):
        if importlib.util.find_spec(missing) is None:
            stub = types.ModuleType(missing)
            stub.odeint = None
            sys.modules[missing] = stub
    module_spec = importlib.util.spec_from_file_location("kd.sampling", folder / "sampling.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["kd.sampling"] = module
    module_spec.loader.exec_module(module)
    return module


def flow_against_diffusers(start: torch.Tensor) -> dict[str, float]:
    from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

    out = {}
    for shift in (1.0, 3.0):
        schedule = create("schedule", "flow", shift=shift)
        model = oracle(schedule, "velocity")
        for name, peer_class in (("euler", FlowMatchEulerDiscreteScheduler), ("heun", FlowMatchHeunDiscreteScheduler)):
            peer = peer_class(num_train_timesteps=1000, shift=shift)
            peer.set_timesteps(10)
            x = start.clone().float()
            for t in peer.timesteps:
                v = model(x.double(), t.reshape(1).expand(len(x)).double()).float()
                x = peer.step(v, t, x).prev_sample
            # vqvdm on diffusers' own levels (sigma = t; diffusers appends the clean end)
            ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
            ref.set_timesteps(10)
            sigmas = [float(s) for s in ref.sigmas[:-1]]
            sampler = create("sampler", name)
            ours = run_sampler(_OnLevels(sampler, [1000.0 * s for s in sigmas]), model, schedule,
                               prediction_type="velocity", x=start.clone(), steps=len(sigmas))
            out[f"flow shift {shift:g} {name}: |vqvdm - diffusers| on diffusers' levels"] = float(
                (ours.float() - x).abs().max())
            own = run_sampler(sampler, model, schedule, prediction_type="velocity", x=start.clone(), steps=10)
            exact = MU + S * start
            out[f"flow shift {shift:g} {name}: |vqvdm own chain - exact ODE|"] = float((own - exact).abs().max())
            out[f"flow shift {shift:g} {name}: |diffusers - exact ODE|"] = float((x.double() - exact).abs().max())
    return out


class _OnLevels:
    """A built sampler run on given time values (the peer's levels) instead of its own chain."""

    def __init__(self, sampler, times):
        self.sampler, self.times = sampler, times

    def chain(self, schedule, steps, *, start=None):
        return schedule.chain_at(self.times)

    def check(self, chain):
        self.sampler.check(chain)

    def sample(self, *args, **kwargs):
        return self.sampler.sample(*args, **kwargs)


def edm_against_k_diffusion(start: torch.Tensor) -> dict[str, float]:
    sampling = k_diffusion_sampling()
    schedule = create("schedule", "edm")
    out = {}
    for levels in (10, 32):
        sigmas = sampling.get_sigmas_karras(levels, 0.002, 80.0, rho=7.0).double()
        x_start = start * 80.0  # pure noise at sigma_max (the data's spread is negligible there)

        def denoiser(x, sigma):
            return exact_x0(x, 1.0, sigma.reshape(-1, *([1] * (x.ndim - 1))))

        model = oracle(schedule, "x0")  # F of the preconditioned x0 parameterisation
        exact = MU + S * (x_start - MU) / math.sqrt(S**2 + 80.0**2)
        for name, peer in (("euler", sampling.sample_euler), ("heun", sampling.sample_heun)):
            theirs = peer(denoiser, x_start.clone(), sigmas, disable=True)
            ours = run_sampler(create("sampler", name), model, schedule, prediction_type="x0", x=x_start.clone(),
                               steps=levels)
            out[f"edm {levels} levels {name}: |vqvdm - k-diffusion|"] = float((ours - theirs).abs().max())
            out[f"edm {levels} levels {name}: |vqvdm - exact ODE|"] = float((ours - exact).abs().max())
    return out


def main() -> None:
    start = torch.randn((N, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    report = {**flow_against_diffusers(start), **edm_against_k_diffusion(start)}
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value:.3g}")
    (Path("/tmp") / "peer_samplers.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

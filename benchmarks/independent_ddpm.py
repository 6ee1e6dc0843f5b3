"""A from-scratch DDPM on the motion_learning toy, to rule out a defect in the library's diffusion path.

It shares only the network (``UNet3D`` built directly, with the quickstart's widths and
v-prediction), the synthetic latents and the probe of ``benchmarks/motion_learning.py`` with the
library. Everything else is written out here independently of ``vqvdm_core`` and the plug-ins:
the cosine schedule (Nichol & Dhariwal), the v-prediction loss (Salimans & Ho), the class
embedding with a null class and 30 % condition dropout, an FPS embedding (an MLP of log2 FPS),
the weight EMA, deterministic 20-step DDIM and classifier-free guidance.

Run it next to the library's path at the same settings and compare loss and probe per interval::

    python benchmarks/independent_ddpm.py --steps 400 --every 200
    python benchmarks/motion_learning.py --steps 400 --every 200 --batch-size 64 --frames 4 \\
        --set denoiser.prediction_type=v --set schedule.beta_schedule=cosine

Loss curves that agree (within the difference of the two conditioning embeddings) mean the
library's schedule, loss, conditioning, sampler and guidance are not what holds learning back.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _common import REPO  # noqa: F401  (puts the repository on sys.path)
from motion_learning import probe_latents, save_strips, synthetic_latents
from vqvdm_plugins.unet3d.unet import UNet3D

NUM_CLASSES, FPS_VALUES, NULL = 4, (4.0, 8.0, 16.0), 4  # the quickstart's classes and frame rates
TRAIN_STEPS = 1000


def cosine_alphas_cumprod(num_steps: int, s: float = 0.008) -> Tensor:
    """``abar`` at steps ``1..num_steps`` (index 0..num_steps-1) of the cosine schedule, float64."""
    u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (f[1:] / f[0]).clamp(1e-12, 1.0)


class ConditionedUNet(nn.Module):
    """``UNet3D`` with its own class (+ null) and FPS embeddings added to the time embedding."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.unet = UNet3D(in_channels=4, channels=channels, channel_mults=(1, 2), num_res_blocks=1,
                           attention_head_dim=16, norm_groups=8, prediction_type="v")
        dim = self.unet.emb_dim
        self.label = nn.Embedding(NUM_CLASSES + 1, dim)
        nn.init.normal_(self.label.weight, std=0.02)
        self.fps = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor, t: Tensor, label: Tensor, fps: Tensor) -> Tensor:
        emb = self.label(label) + self.fps(torch.log2(fps)[:, None] - 3.0)
        return self.unet(x, t, emb)


@torch.no_grad()
def ddim_cfg(model: nn.Module, abar: Tensor, *, label: Tensor, fps: Tensor, w: float, shape: tuple[int, ...],
             steps: int, seed: int) -> Tensor:
    """Deterministic DDIM over ``steps`` evenly spaced steps, v-prediction, guidance ``w``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    kept = torch.linspace(len(abar) - 1, 0, steps).round().long()
    null = torch.full_like(label, NULL)
    for i, t in enumerate(kept.tolist()):
        a_t = float(abar[t])
        a_prev = float(abar[kept[i + 1]]) if i + 1 < steps else 1.0
        tt = torch.full((shape[0],), t)
        v_cond, v_null = model(x, tt, label, fps), model(x, tt, null, fps)
        v = v_null + w * (v_cond - v_null)
        x0 = math.sqrt(a_t) * x - math.sqrt(1 - a_t) * v
        eps = math.sqrt(1 - a_t) * x + math.sqrt(a_t) * v
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4, help="latent frames (8x8 latents, 4 channels)")
    parser.add_argument("--channels", type=int, default=32, help="the U-Net's width")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", type=Path, default=None, help="write PNG film strips of the samples here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = 8
    data = dict(channels=4, frames=args.frames, size=size, num_classes=NUM_CLASSES, fps_values=list(FPS_VALUES),
                cells_per_second=0.5 * size, object_cells=0.3 * size)  # the quickstart's speed and shape size
    abar = cosine_alphas_cumprod(TRAIN_STEPS).float()

    def probe(latent: Tensor, label: Tensor, fps: Tensor) -> dict[str, float]:
        return probe_latents(latent, label, fps, num_classes=NUM_CLASSES, speed=0.5)

    real, real_label, real_fps = synthetic_latents(96, generator=torch.Generator().manual_seed(123), **data)
    scale = 1.0 / float(real.std())  # unit-variance training latents
    print(json.dumps({"step": 0, "training_clips": probe(real, real_label, real_fps)}), flush=True)

    model = ConditionedUNet(channels=args.channels)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    n = args.samples
    label = torch.arange(n) % NUM_CLASSES
    fps = torch.tensor(FPS_VALUES)[torch.arange(n) // NUM_CLASSES % len(FPS_VALUES)]
    start, running = time.perf_counter(), 0.0
    for step in range(1, args.steps + 1):
        x0, y, clip_fps = synthetic_latents(args.batch_size, generator=generator, **data)
        x0 = x0 * scale
        y = torch.where(torch.rand(args.batch_size, generator=generator) < 0.3, torch.full_like(y, NULL), y)
        t = torch.randint(0, TRAIN_STEPS, (args.batch_size,), generator=generator)
        a = abar[t].view(-1, 1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
        loss = F.mse_loss(model(x_t, t, y, clip_fps), target)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 100)  # the quickstart's warm-up
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for shadow, weight in zip(ema.parameters(), model.parameters()):
                shadow.lerp_(weight, 1 - 0.995)  # the quickstart's EMA decay
        running += loss.item()
        if step % args.every == 0:
            result: dict[str, object] = {"step": step, "loss": round(running / args.every, 4),
                                         "seconds": round(time.perf_counter() - start, 1)}
            ema.eval()
            for w in (0.0, 3.0):
                z = ddim_cfg(ema, abar, label=label, fps=fps, w=w, shape=(n, *real.shape[1:]), steps=20, seed=1)
                z = z / scale
                result[f"w={w:g}"] = probe(z, label, fps)
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    save_strips(z, args.save / f"step{step:06d}_w{w:g}.png")
            print(json.dumps(result), flush=True)
            running = 0.0


if __name__ == "__main__":
    main()

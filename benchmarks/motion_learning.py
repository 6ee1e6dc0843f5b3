"""How many training steps does a recipe's denoiser need to generate directed motion?

No tokenizer, no data files: the training clips are clean synthetic *latents* with the quickstart's
structure: per clip a random background vector and a random object vector (unit vectors in the
latent's channels; one fixed orthogonal pair for all clips when the recipe's data fixes
``background_colour`` and ``shape_colour``) and a soft square object that moves on a torus in the
class's direction at ``cells_per_second / fps`` cells per latent frame. The recipe's denoiser, schedule, conditioners
and guidance (after ``--set`` overrides, e.g. ``--set denoiser.prediction_type=v``) are trained on
them with Adam, and every ``--every`` steps the EMA weights sample ``--samples`` clips (every class
at every FPS) at w = 0 and at the recipe's guidance scale. The recipe's ``motion_probe`` scores
them on a map of each position's distance from the clip's median vector, upsampled 4x. Each probe
line also has ``x0_error``: the EMA model's one-step x0 error on held-out clips at a few noise
levels, relative to an oracle that knows each clip's mean vector (see :func:`x0_error`).

This separates the denoiser's learning from the tokenizer's: if the probe stays at chance here,
no tokenizer can help. ::

    python benchmarks/motion_learning.py --steps 2000 --every 500 [--set denoiser.channels=48]

Prints one line per probe (and the probe on the training clips themselves first, the ceiling);
``--save DIR`` also writes what the probe sees as PNG film strips, a row per clip.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from _common import REPO
from vqvdm_core import create
from vqvdm_core.engine.ema import EMA
from vqvdm_core.recipe import load_recipe
from vqvdm_core.system import build_system

UPSAMPLE = 4  # latent cells -> probe pixels


def synthetic_latents(n: int, *, generator: torch.Generator, channels: int, frames: int, size: int,
                      num_classes: int, fps_values: list[float], cells_per_second: float,
                      object_cells: float, colours: tuple[Tensor, Tensor] | None = None,
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """``(latent (n, channels, frames, size, size), label (n,), fps (n,))``; every position holds the
    background vector, the object vector, or a blend of the two at the object's soft edge.

    ``colours``: ``(background, object)`` vectors ``(channels,)`` shared by every clip; unset, each
    clip draws its own pair of random unit vectors."""
    label = torch.randint(0, num_classes, (n,), generator=generator)
    fps = torch.tensor(fps_values)[torch.randint(0, len(fps_values), (n,), generator=generator)]
    step = cells_per_second / fps  # cells per latent frame
    theta = 2 * math.pi * label / num_classes
    vx, vy = step * torch.cos(theta), -step * torch.sin(theta)  # +y points down, as synthetic_motion
    if colours is None:
        background = F.normalize(torch.randn(n, channels, generator=generator), dim=1)
        foreground = F.normalize(torch.randn(n, channels, generator=generator), dim=1)
    else:
        background, foreground = (c.expand(n, channels) for c in colours)
    x0, y0 = torch.rand(n, generator=generator) * size, torch.rand(n, generator=generator) * size
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    t = torch.arange(frames, dtype=torch.float32)
    cx = x0[:, None] + vx[:, None] * t  # (n, T)
    cy = y0[:, None] + vy[:, None] * t

    def coverage(c: Tensor) -> Tensor:  # (n, T) centres -> (n, T, size) soft 1D coverage on the torus
        d = (centres[None, None] - c[..., None] + size / 2) % size - size / 2
        return (object_cells / 2 + 0.5 - d.abs()).clamp(0, 1)

    cover = coverage(cy)[..., :, None] * coverage(cx)[..., None, :]  # (n, T, H, W)
    latent = background[:, :, None, None, None] + (foreground - background)[:, :, None, None, None] * cover[:, None]
    return latent, label, fps


def as_probe_video(latent: Tensor) -> Tensor:
    """``(n, c, T, h, w)`` -> ``(n, 3, T, 4h, 4w)`` in [-1, 1]: distance of every position's vector
    from the clip's median vector (the background), scaled to [0, 1] per clip."""
    median = latent.flatten(2).median(dim=2).values[:, :, None, None, None]
    distance = (latent - median).norm(dim=1)  # (n, T, h, w)
    distance = distance / distance.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    h, w = distance.shape[-2:]
    big = F.interpolate(distance, size=(UPSAMPLE * h, UPSAMPLE * w), mode="bilinear", align_corners=False)
    return big[:, None].expand(-1, 3, -1, -1, -1) * 2 - 1


def probe_latents(clips: Tensor, labels: Tensor, fps: Tensor, **options) -> dict[str, float]:
    """The ``motion_probe`` metric (built with ``options``) on :func:`as_probe_video` of latent clips.

    Motion in probe pixels is ``speed * (UPSAMPLE * size) / fps``, so the recipe's probe speed holds.
    """
    metric = create("metric", "motion_probe", **options)
    metric.update(fake=as_probe_video(clips), labels=labels, fps=fps)
    values = metric.compute()
    return {k: round(float(values[k]), 3) for k in ("class_accuracy", "fps_speed_spearman", "mean_speed_px", "persistence")}


class LatentStandIn(torch.nn.Module):
    """The minimum of a tokenizer that ``build_system`` needs: channels and the latent shape."""

    trainable = False

    def __init__(self, channels: int, frames: int, size: int):
        super().__init__()
        self.latent_channels = channels
        self._shape = (channels, frames, size, size)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return self._shape

    def decode(self, latent: Tensor) -> Tensor:
        return latent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "quickstart.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's denoiser lr")
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--frames", type=int, default=8, help="latent frames")
    parser.add_argument("--size", type=int, default=8, help="latent height and width")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", type=Path, default=None,
                        help="write each probe's clips as PNG film strips (a row per clip) into this folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    recipe = load_recipe(args.recipe, args.overrides)
    data = recipe.data.train.config
    num_classes, fps_values = data.num_classes, list(data.fps_values)
    # The quickstart's motion in latent cells: speed (frame sizes per second) * latent size.
    shape = dict(channels=args.channels, frames=args.frames, size=args.size, num_classes=num_classes,
                 fps_values=fps_values, cells_per_second=data.speed * args.size,
                 object_cells=data.shape_size * args.size, colours=fixed_colours(data, args.channels))
    stand_in = LatentStandIn(args.channels, args.frames, args.size)
    system = _build(recipe, stand_in, num_classes, args)
    train_cfg = recipe.train.denoiser
    lr = args.lr or train_cfg.optimizer.lr
    params = system.optimizer_groups()["denoiser"]
    optimizer = torch.optim.Adam(params, lr=lr)
    learned = torch.nn.ModuleList([system.denoiser, *system.conditioners])
    ema = EMA(learned, decay=train_cfg.ema_decay)
    probe_spec = next(m for m in recipe.evaluate.metrics if m.name == "motion_probe")

    def probe(clips: Tensor, labels: Tensor, fps: Tensor) -> dict[str, float]:
        return probe_latents(clips, labels, fps, **probe_spec.options)

    real, real_labels, real_fps = synthetic_latents(96, generator=torch.Generator().manual_seed(123), **shape)
    system.set_latent_scale(1.0 / float(real.std()))  # the denoiser sees unit-variance latents
    print(json.dumps({"step": 0, "training_clips": probe(real, real_labels, real_fps)}), flush=True)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        save_strips(real[:args.samples], args.save / "training_clips.png")

    generator = torch.Generator().manual_seed(0)
    n = args.samples
    labels = torch.arange(n) % num_classes
    fps = torch.tensor(fps_values)[torch.arange(n) // num_classes % len(fps_values)]
    start, running = time.perf_counter(), 0.0
    system.train()
    for step in range(1, args.steps + 1):
        latent, label, clip_fps = synthetic_latents(args.batch_size, generator=generator, **shape)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, step / max(1, train_cfg.optimizer.warmup_steps))
        loss = system.training_step({"latent": latent, "label": label, "fps": clip_fps}, step=step).losses["denoiser"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(learned)
        running += loss.item()
        if step % args.every == 0:
            result: dict[str, object] = {"step": step, "loss": round(running / args.every, 4),
                                         "seconds": round(time.perf_counter() - start, 1)}
            with ema.swapped_in(learned):
                result["x0_error"] = x0_error(system, real, real_labels, real_fps)
                for scale in sorted({0.0, float(system.guidance.scale)}):
                    sampled = system.sample(n, labels=labels, fps=fps, steps=recipe.evaluate.steps,
                                            guidance_scale=scale, decode=False,
                                            generator=torch.Generator().manual_seed(1))
                    result[f"w={scale:g}"] = {**probe(sampled, labels, fps),
                                              "std_ratio": round(float(sampled.std() / real.std()), 2)}
                    if args.save:
                        save_strips(sampled, args.save / f"step{step:06d}_w{scale:g}.png")
            print(json.dumps(result), flush=True)
            system.train()
            running = 0.0


X0_ERROR_STEPS = (200, 400, 600, 800, 950)


@torch.no_grad()
def x0_error(system, real: Tensor, labels: Tensor, fps: Tensor) -> dict[str, float]:
    """The denoiser's one-step x0 error on ``real`` clips noised to each of :data:`X0_ERROR_STEPS`,
    relative to an oracle that knows each clip's mean vector but not where the object is.

    Below 1 the model has located the object at that noise level; above 1 it does worse than a
    flat field of the right colour (early in training: it passes noise through to its x0 estimate).
    """
    system.eval()
    z0 = real * system.latent_scale
    oracle = float(((z0 - z0.mean(dim=(2, 3, 4), keepdim=True)) ** 2).mean())
    emb = system.embed({"label": labels, "fps": fps}, mode="cond")
    schedule, kind = system.schedule, system.denoiser.prediction_type
    out = {}
    for t in X0_ERROR_STEPS:
        steps = torch.full((z0.shape[0],), t)
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t))
        z_t = schedule.add_noise(z0, noise, steps)
        abar = float(schedule.alphas_cumprod[t])
        x0, _ = schedule.predict_x0_eps(system.denoiser(z_t, steps, emb), z_t, abar, kind)
        out[f"t={t}"] = round(float(((x0 - z0) ** 2).mean()) / oracle, 3)
    return out


def fixed_colours(data, channels: int) -> tuple[Tensor, Tensor] | None:
    """When the recipe's data fixes both colours, one fixed pair of orthogonal unit vectors standing
    for them (the latent of a colour is not known without a tokenizer); else None (random pairs)."""
    if getattr(data, "background_colour", None) is None or getattr(data, "shape_colour", None) is None:
        return None
    basis = torch.eye(channels)
    return basis[0], basis[1 % channels]


def save_strips(latent: Tensor, path: Path) -> None:
    """The probe's view of ``(n, c, T, h, w)`` clips as one PNG: a row per clip, a column per frame."""
    from torchvision.utils import save_image

    frames = as_probe_video(latent)[:, 0]  # (n, T, 4h, 4w) in [-1, 1]
    n, t = frames.shape[:2]
    tiles = frames.reshape(n * t, 1, *frames.shape[2:]) * 0.5 + 0.5
    save_image(tiles, path, nrow=t, padding=1, pad_value=0.5)


def _build(recipe, stand_in: LatentStandIn, num_classes: int, args: argparse.Namespace):
    """The recipe's system around the stand-in tokenizer."""
    from vqvdm_core.interfaces import VideoTokenizer

    VideoTokenizer.register(LatentStandIn)  # a virtual subclass: the system checks the interface
    return build_system(recipe, num_classes=num_classes, clip_shape=(args.frames, args.size, args.size),
                        tokenizer=stand_in)


if __name__ == "__main__":
    main()

"""Long videos and continuations from a trained run, scored with the motion probe (issue 16).

    python benchmarks/long_video.py runs/quickstart --frames 64 --num-samples 256 --guidance 3 \
        --continuations 256 --context-frames 8 --out long_video.json

**Long clips.** ``--num-samples`` clips of ``--frames`` frames (the evaluate stage's conditions:
cycling over classes and FPS values; its sampler and steps unless ``--sampler``/``--steps``), drawn
window by window as ``vqvdm sample RUN --frames N`` draws them, at guidance ``--guidance``:

- ``class_accuracy`` of every trained-length window of the clip (window 1 = frames 0-15 of a
  16-frame model, window 4 = frames 48-63), each with the asked-for class;
- ``fps_speed_spearman`` over the whole clips (speed measured over every frame pair);
- ``seam_ratio``: the mean absolute frame-to-frame change at the frame pairs where a sampling
  window's first new frame meets the frames before it, over the mean change at every other pair
  (1 = no seam);
- ``last_window_std_ratio``: standard deviation of the last sampling window's generated latents
  over the training latents' (``latents`` stage record); ``window_std_ratios`` for every window.

**Continuations.** The first ``--context-frames`` frames of the first ``--continuations`` clips of
the recipe's held-out (``data.val``) set are continued to ``--continue-to`` frames (default: the
clip length) *without* their class (the null label: the direction must come from the frames) and
with their own FPS. On the generated frames only: ``direction_agreement`` (the probe's direction
class of the continuation equals the context clip's class) and the median relative error between
the continuation's speed and the real clip's measured speed.

Writes JSON (``--out``) and prints a table. Noise is seeded (``--seed``), so a run repeats exactly.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch

from _common import REPO, conditions, say, write_json  # noqa: F401  (puts the repository on sys.path)
from sampler_quality import cpu_flags, parse_sampler
from vqvdm_core.interfaces.sampler import sampling_chain
from vqvdm_core.io.pixels import uint8_to_unit_range
from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.conditions import cycle
from vqvdm_core.runtime.progress import progress
from vqvdm_plugins.metrics.motion_probe import estimate_shift


def motion_probe(ctx: Any) -> Any:
    """The recipe's ``motion_probe`` evaluate metric (the data's classes and speed), built anew."""
    for spec in ctx.recipe.evaluate.metrics:
        if spec.name == "motion_probe":
            return spec.build("metric")
    raise SystemExit("the run's recipe has no motion_probe in evaluate.metrics (synthetic_motion data only)")


def clip_velocity(video: torch.Tensor) -> torch.Tensor:
    """Mean displacement per frame ``(B, 2)`` (dx, dy in pixels, y down) over consecutive frame pairs."""
    b, c, t, h, w = video.shape
    a = video[:, :, :-1].transpose(1, 2).reshape(b * (t - 1), c, h, w)
    n = video[:, :, 1:].transpose(1, 2).reshape(b * (t - 1), c, h, w)
    return estimate_shift(a, n).view(b, t - 1, 2).mean(dim=1)


def direction_class(velocity: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The probe's direction class of ``(B, 2)`` velocities (angle with y up, snapped)."""
    angle = torch.atan2(-velocity[:, 1], velocity[:, 0])
    return torch.round(angle / (2 * math.pi / num_classes)).long() % num_classes


def frame_changes(video: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames, per pair ``(T - 1,)`` summed over the batch."""
    return (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(1, 3, 4)).sum(dim=0)


def long_clips(ctx: Any, system: Any, args: argparse.Namespace, sampler: Any, steps: int | None) -> dict[str, Any]:
    meta = ctx.latents_meta()
    clip_frames = system.clip_shape[0]
    if args.frames % clip_frames:
        raise SystemExit(f"--frames must be a multiple of the trained clip length ({clip_frames})")
    plan = system.plan(frames=args.frames, overlap=args.overlap)
    factor = clip_frames // system.latent_shape[1]
    seams = [w.first_new * factor for w in plan[1:]]  # first new frame of each later window
    conds = cycle(meta, args.num_samples, fps=None)
    probes = {j: motion_probe(ctx) for j in range(args.frames // clip_frames)}
    whole = motion_probe(ctx)
    changes = torch.zeros(args.frames - 1, dtype=torch.float64)
    sq = torch.zeros(len(plan), dtype=torch.float64)
    count = torch.zeros(len(plan), dtype=torch.float64)
    generator = torch.Generator(device=ctx.device).manual_seed(args.seed)
    levels = len(sampling_chain(system.resolve_sampler(sampler), system.schedule, steps))
    n = len(conds)
    start_time = time.perf_counter()
    batches = math.ceil(n / args.batch_size)
    with progress(ctx.console, batches * len(plan) * levels,
                  f"long clips: {len(plan)} windows x {levels} steps") as advance:
        for start in range(0, n, args.batch_size):
            part = conds.chunk(start, min(n, start + args.batch_size))
            labels, fps = torch.tensor(part.labels), torch.tensor(part.fps)
            z = system.sample(len(part), labels=labels.to(ctx.device), fps=fps.to(ctx.device), steps=steps,
                              sampler=sampler, guidance_scale=args.guidance, generator=generator,
                              frames=args.frames, overlap=args.overlap, known_frames=args.known_frames,
                              reconstruction_weight=args.reconstruction_weight, known_guidance=args.known_guidance,
                              progress=lambda i, total: advance(1), decode=False)
            for k, window in enumerate(plan):
                new = z[:, :, window.first_new:window.end].double()
                sq[k] += float((new - new.mean()).pow(2).sum())  # per-batch mean: fine for a ratio
                count[k] += new.numel()
            video = system.decode(z).float().clamp(-1, 1).cpu()
            for j, probe in probes.items():
                probe.update(fake=video[:, :, j * clip_frames:(j + 1) * clip_frames], labels=labels, fps=fps)
            whole.update(fake=video, labels=labels, fps=fps)
            changes += frame_changes(video.double())
    seconds = time.perf_counter() - start_time
    pair_is_seam = torch.zeros(args.frames - 1, dtype=torch.bool)
    for frame in seams:
        pair_is_seam[frame - 1] = True  # the pair (frame - 1, frame)
    seam_ratio = float(changes[pair_is_seam].mean() / changes[~pair_is_seam].mean()) if seams else math.nan
    stds = (sq / count).sqrt() / float(meta["latent_std"])
    per_window = {f"window_{j + 1}": probe.compute() for j, probe in probes.items()}
    return {
        "frames": args.frames, "num_clips": n, "guidance": args.guidance, "seconds": round(seconds, 1),
        "sampling_windows": [[w.start, w.known, w.end] for w in plan],
        "class_accuracy_per_window": {k: v["class_accuracy"] for k, v in per_window.items()},
        "per_window": per_window,
        "whole": whole.compute(),
        "seam_ratio": seam_ratio,
        "seam_frames": seams,
        "window_std_ratios": [round(float(s), 4) for s in stds],
        "last_window_std_ratio": float(stds[-1]),
    }


def continuations(ctx: Any, system: Any, args: argparse.Namespace, sampler: Any, steps: int | None) -> dict[str, Any]:
    data = ctx.dataset("val")
    num_classes = int(ctx.latents_meta()["num_classes"])
    k = args.context_frames
    total = args.continue_to or system.clip_shape[0]
    count = min(args.continuations, len(data))
    generator = torch.Generator(device=ctx.device).manual_seed(args.seed + 1)
    agree, errors, given_speed = [], [], []
    plan = system.plan(frames=total, context=torch.zeros(1, 3, k, *system.clip_shape[1:]), overlap=args.overlap)
    levels = len(sampling_chain(system.resolve_sampler(sampler), system.schedule, steps))
    start_time = time.perf_counter()
    with progress(ctx.console, math.ceil(count / args.batch_size) * len(plan) * levels,
                  f"continuations: {len(plan)} windows x {levels} steps") as advance:
        for start in range(0, count, args.batch_size):
            items = [data[i] for i in range(start, min(count, start + args.batch_size))]
            real = torch.stack([torch.as_tensor(it["video"]) for it in items]).float()  # (B, 3, T, H, W)
            if real.abs().max() > 1.5:  # uint8 clips
                real = uint8_to_unit_range(real)
            labels = torch.tensor([int(it["label"]) for it in items])
            fps = torch.tensor([float(it["fps"]) for it in items])
            video = system.sample(len(items), fps=fps.to(ctx.device), steps=steps, sampler=sampler,
                                  generator=generator, frames=total, context=real[:, :, :k].to(ctx.device),
                                  overlap=args.overlap, known_frames=args.known_frames,
                                  reconstruction_weight=args.reconstruction_weight, known_guidance=args.known_guidance,
                                  progress=lambda i, n: advance(1)).float().clamp(-1, 1).cpu()
            generated = clip_velocity(video[:, :, k:].double())
            reference = clip_velocity(real.double())
            agree.append(direction_class(generated, num_classes) == labels)
            speed, ref_speed = generated.norm(dim=1), reference.norm(dim=1)
            errors.append((speed - ref_speed).abs() / ref_speed)
            given_speed.append(ref_speed)
    agreement, error = torch.cat(agree).double(), torch.cat(errors)
    return {
        "num_clips": count, "context_frames": k, "frames": total, "label": "null (not given)",
        "seconds": round(time.perf_counter() - start_time, 1),
        "sampling_windows": [[w.start, w.known, w.end] for w in plan],
        "direction_agreement": float(agreement.mean()),
        "median_speed_rel_error": float(error.median()),
        "mean_speed_rel_error": float(error.mean()),
        "mean_context_speed_px": float(torch.cat(given_speed).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory with a trained denoiser stage")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--overlap", type=int, default=None, help="latent frames kept per window (default: half)")
    parser.add_argument("--known-frames", default="replacement", choices=["replacement", "reconstruction"])
    parser.add_argument("--reconstruction-weight", type=float, default=2.0)
    parser.add_argument("--known-guidance", type=float, default=None,
                        help="guidance on the known frames (default: the recipe's sample.known_guidance)")
    parser.add_argument("--sampler", default=None, help="NAME or NAME:opt=value,... (default: the recipe's evaluate)")
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's evaluate.steps")
    parser.add_argument("--continuations", type=int, default=256, help="held-out clips to continue (0: none)")
    parser.add_argument("--context-frames", type=int, default=8)
    parser.add_argument("--continue-to", type=int, default=None, help="frames of a continuation (default: clip length)")
    parser.add_argument("--skip-long", action="store_true", help="only the continuations")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ctx = open_run(args.run, [])
    system = ctx.system(trained=True)
    sampler = parse_sampler(args.sampler) if args.sampler else ctx.recipe.evaluate.sampler
    steps = args.steps or ctx.recipe.evaluate.steps
    if args.known_guidance is None:
        args.known_guidance = ctx.recipe.sample.known_guidance
    result: dict[str, Any] = {
        "run": str(args.run), "sampler": str(sampler), "steps": steps, "known_frames": args.known_frames,
        "reconstruction_weight": args.reconstruction_weight, "overlap": args.overlap,
        "known_guidance": args.known_guidance,
        "conditions": {**conditions(ctx.device), "cpu_flags": cpu_flags()},
    }
    if not args.skip_long:
        result["long"] = long_clips(ctx, system, args, sampler, steps)
        write_json(result, args.out)
    if args.continuations:
        result["continuation"] = continuations(ctx, system, args, sampler, steps)
        write_json(result, args.out)

    if "long" in result:
        r = result["long"]
        acc = r["class_accuracy_per_window"]
        say(f"long clips: {r['num_clips']} x {r['frames']} frames, w = {r['guidance']}, {r['seconds']} s")
        say("| window | " + " | ".join(acc) + " |")
        say("| class accuracy | " + " | ".join(f"{v:.3f}" for v in acc.values()) + " |")
        say(f"whole-clip Spearman(FPS, speed) {r['whole']['fps_speed_spearman']:.3f}; seam ratio "
            f"{r['seam_ratio']:.3f}; last-window latent std ratio {r['last_window_std_ratio']:.3f} "
            f"(all windows: {r['window_std_ratios']})")
    if "continuation" in result:
        r = result["continuation"]
        say(f"continuations: {r['num_clips']} clips, {r['context_frames']} -> {r['frames']} frames, "
            f"{r['seconds']} s: direction agreement {r['direction_agreement']:.3f}, median speed error "
            f"{r['median_speed_rel_error']:.3f}")


if __name__ == "__main__":
    main()

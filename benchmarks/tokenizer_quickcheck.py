"""How good does a tiny ``vqgan3d`` get in a few CPU minutes, with a plain vs an EMA codebook?

Trains a small VQGAN3D on synthetic clips (coloured squares moving with wrap-around on a plain
background) with Adam for a fixed wall-clock budget, then reports PSNR on held-out clips, the share
and number of codebook entries in use, and seconds per step::

    .venv/bin/python benchmarks/tokenizer_quickcheck.py --variant plain --seconds 120
    .venv/bin/python benchmarks/tokenizer_quickcheck.py --variant ema --seconds 120
    .venv/bin/python benchmarks/tokenizer_quickcheck.py --variant ema --spatial-factor 4 --seconds 120

``plain`` is LDM's quantizer (uniform init in [-1/K, 1/K], codebook loss); ``ema`` is the EMA
codebook (decay 0.99) initialised from the first batch, with dead codes re-seeded from the batch's
encoder outputs (threshold 1.0, as TATS). The perceptual and GAN terms are off: LPIPS needs the
ImageNet VGG16 file and the GAN switches on after 10k steps, neither of which fits a CPU minute.
Prints one JSON line of results at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from vqvdm_plugins.vqgan3d.tokenizer import VQGAN3D


def moving_squares(n: int, *, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 3, T, H, W)`` in [-1, 1]: 1-2 squares, constant velocity, wrap-around, plain background."""
    clips = torch.empty(n, 3, frames, size, size)
    for i in range(n):
        background = torch.rand(3, generator=generator) * 2 - 1
        frame = background[:, None, None].expand(3, size, size).clone()
        layers = []
        for _ in range(int(torch.randint(1, 3, (1,), generator=generator))):
            side = int(torch.randint(size // 8, size // 3 + 1, (1,), generator=generator))
            colour = torch.rand(3, generator=generator) * 2 - 1
            y, x = (int(v) for v in torch.randint(0, size, (2,), generator=generator))
            dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
            layers.append((side, colour, y, x, dy, dx))
        for t in range(frames):
            img = frame.clone()
            for side, colour, y, x, dy, dx in layers:
                mask = torch.zeros(size, size, dtype=torch.bool)
                mask[:side, :side] = True
                mask = torch.roll(mask, shifts=(y + dy * t, x + dx * t), dims=(0, 1))
                img[:, mask] = colour[:, None]
            clips[i, :, t] = img
    return clips


def psnr(recon: torch.Tensor, real: torch.Tensor) -> float:
    """PSNR in dB of clips in [-1, 1] (peak-to-peak 2), averaged over clips."""
    mse = ((recon.clamp(-1, 1) - real) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["plain", "ema"], default="ema")
    parser.add_argument("--seconds", type=float, default=120.0, help="training wall-clock budget")
    parser.add_argument("--size", type=int, default=32, help="frame height and width")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--spatial-factor", type=int, default=8)
    parser.add_argument("--temporal-factor", type=int, default=4)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--channel-mults", default="1,2,4,4",
                        help="comma-separated, one per level: log2(max factor) + 1 entries")
    parser.add_argument("--num-codes", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-clips", type=int, default=256, help="fixed pool of training clips")
    parser.add_argument("--val-clips", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mults = tuple(int(m) for m in args.channel_mults.split(","))
    ema = args.variant == "ema"
    tok = VQGAN3D(channels=args.channels, channel_mults=mults, num_res_blocks=1, norm_groups=8,
                  temporal_factor=args.temporal_factor, spatial_factor=args.spatial_factor,
                  num_codes=args.num_codes, codebook_ema=ema, codebook_init_from_data=ema,
                  dead_code_threshold=1.0 if ema else None,
                  perceptual_weight=0.0, adversarial_weight=0.0, feature_matching_weight=0.0)
    train = moving_squares(args.train_clips, frames=args.frames, size=args.size,
                           generator=torch.Generator().manual_seed(args.seed))
    val = moving_squares(args.val_clips, frames=args.frames, size=args.size,
                         generator=torch.Generator().manual_seed(10_000 + args.seed))
    opt = torch.optim.Adam(tok.optimizer_groups()["generator"], lr=args.lr)

    step, start, logs = 0, time.time(), {}
    tok.train()
    while time.time() - start < args.seconds:
        idx = torch.randint(0, len(train), (args.batch,))
        out = tok.training_step({"video": train[idx]}, step=step)
        opt.zero_grad(set_to_none=True)
        out.losses["generator"].backward()
        opt.step()
        step += 1
        logs = out.logs
        if step % 50 == 0:
            print(f"step {step:5d}  {time.time() - start:6.1f}s  train psnr {logs['psnr']:.2f}  "
                  f"codes in use {logs['codes_in_use']:.3f}  perplexity {logs['perplexity']:.1f}", flush=True)
    elapsed = time.time() - start

    tok.eval()
    with torch.no_grad():
        indices = torch.cat([tok.quantizer(tok.encode_continuous(val[i:i + 8])).indices.flatten()
                             for i in range(0, len(val), 8)])
        recon = torch.cat([tok.decode(tok.encode(val[i:i + 8])) for i in range(0, len(val), 8)])
    used = int(torch.unique(indices).numel())
    result = {
        "variant": args.variant, "clip": f"{args.frames}x{args.size}x{args.size}",
        "latent": "x".join(map(str, tok.latent_shape(args.frames, args.size, args.size))),
        "channels": args.channels, "channel_mults": list(mults), "num_codes": args.num_codes,
        "batch": args.batch, "lr": args.lr, "threads": args.threads,
        "params": sum(p.numel() for p in tok.parameters()), "steps": step,
        "s_per_step": round(elapsed / max(step, 1), 3),
        "val_psnr_db": round(psnr(recon, val), 2),
        "val_codes_used": used, "val_codes_used_share": round(used / args.num_codes, 4),
        "val_mse": round(float(F.mse_loss(recon.clamp(-1, 1), val)), 5),
        "train_codes_in_use_last_batch": round(logs.get("codes_in_use", math.nan), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

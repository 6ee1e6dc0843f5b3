"""Denoiser throughput at the paper's latent shape: forward (batch 2, as CFG runs it) and a
training step, side by side with video-diffusion-pytorch's ``Unet3D`` (the public reproduction of
pixel-space VDM) on the same input shape, both as a fraction of a matmul timed in the same run.

    python benchmarks/denoiser_throughput.py                       # paper's unet3d vs Unet3D(dim=64)
    python benchmarks/denoiser_throughput.py --threads 1 --repeats 7 --out results/denoiser.json
    python benchmarks/denoiser_throughput.py --train-batch 0       # forward only

The side-by-side needs ``pip install video-diffusion-pytorch`` (an optional extra, see
docs/performance.md); without it that row is skipped with a message. Our U-Net is built from the
recipe's ``denoiser`` node (default recipes/vqvdm_ucf101.yaml) with random weights.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from _common import apply_machine_options, paper_recipe_parser, conditions, interleaved, say, write_json
from vqvdm_core.profiling.measure import count_flops, matmul_flops_per_second, summary
from vqvdm_core.recipe import load_recipe


def build_ours(recipe_path: str, overrides: list[str], in_channels: int) -> torch.nn.Module:
    recipe = load_recipe(recipe_path, overrides)
    return recipe.denoiser.build("denoiser", in_channels=in_channels)


def build_vdp(in_channels: int, dim: int) -> torch.nn.Module | None:
    try:
        from video_diffusion_pytorch import Unet3D
    except ImportError as exc:
        say(f"video-diffusion-pytorch is not installed ({exc}); skipping the side-by-side. "
            "Install it with: pip install video-diffusion-pytorch -c scripts/constraints.txt --no-deps "
            "einops-exts rotary-embedding-torch (see docs/performance.md)")
        return None
    return Unet3D(dim=dim, dim_mults=(1, 2, 4, 8), channels=in_channels)


def main() -> None:
    parser = paper_recipe_parser(__doc__, repeats=5)
    parser.add_argument("--shape", default="4,4,16,16", help="c,t,h,w of the denoiser input (paper latent)")
    parser.add_argument("--batch", type=int, default=2, help="forward batch (2 = one clip under CFG)")
    parser.add_argument("--train-batch", type=int, default=2, help="training-step batch; 0 skips it")
    parser.add_argument("--vdp-dim", type=int, default=64, help="video-diffusion-pytorch Unet3D dim")
    args = parser.parse_args()

    device = apply_machine_options(args)
    c, t, h, w = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    ours = build_ours(args.recipe, args.overrides, c).to(device).eval()
    vdp = build_vdp(c, args.vdp_dim)
    vdp = vdp.to(device).eval() if vdp is not None else None

    x = torch.randn(args.batch, c, t, h, w, device=device)
    steps = torch.randint(0, 1000, (args.batch,), device=device)
    emb = torch.randn(args.batch, ours.emb_dim, device=device)
    size = 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    forward: dict[str, Any] = {"ours": lambda: ours(x, steps, emb)}
    if vdp is not None:
        forward["video_diffusion_pytorch"] = lambda: vdp(x, steps)
    matmul_calls = 10
    forward["matmul"] = lambda: [a @ b for _ in range(matmul_calls)]

    flops: dict[str, int] = {}
    with torch.no_grad():
        for name, fn in forward.items():
            with count_flops() as total:
                fn()
            flops[name] = total()
        say(f"forward {tuple(x.shape)}, {conditions(device)}")
        times = interleaved(forward, repeats=args.repeats, device=device, say=say)

    matmul_rate = flops["matmul"] / statistics.median(times["matmul"])
    results: dict[str, Any] = {"conditions": conditions(device), "input_shape": list(x.shape),
                               "matmul_flops_per_second": matmul_rate, "forward": {}}
    for name in forward:
        if name == "matmul":
            continue
        model = ours if name == "ours" else vdp
        rate = flops[name] / statistics.median(times[name])
        results["forward"][name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "flops": flops[name], "seconds": summary(times[name]), "flops_per_second": rate,
            "fraction_of_matmul": rate / matmul_rate,
        }
    if "video_diffusion_pytorch" in results["forward"]:
        fwd = results["forward"]
        results["forward_flops_per_second_ratio"] = (fwd["ours"]["flops_per_second"]
                                                     / fwd["video_diffusion_pytorch"]["flops_per_second"])

    if args.train_batch:
        ours.train()
        optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-4)
        xb = torch.randn(args.train_batch, c, t, h, w, device=device)
        tb = torch.randint(0, 1000, (args.train_batch,), device=device)
        eb = torch.randn(args.train_batch, ours.emb_dim, device=device)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(ours(xb, tb, eb), torch.randn_like(xb))
            loss.backward()
            optimizer.step()

        with count_flops() as total:
            train_step()
        train_flops = total()
        say(f"training step, batch {args.train_batch}")
        train_times = interleaved({"train_step": train_step, "matmul": forward["matmul"]},
                                  repeats=max(1, args.repeats // 2), device=device, warmup=0, say=say)
        step = statistics.median(train_times["train_step"])
        mm = flops["matmul"] / statistics.median(train_times["matmul"])
        results["training_step"] = {
            "batch": args.train_batch, "flops": train_flops, "seconds": summary(train_times["train_step"]),
            "clips_per_second": args.train_batch / step, "flops_per_second": train_flops / step,
            "fraction_of_matmul": train_flops / step / mm,
        }

    write_json(results, args.out)
    for name, row in results["forward"].items():
        say(f"forward {name}: {row['flops'] / 1e9:.1f} GFLOP, {row['seconds']['median'] * 1e3:.0f} ms, "
            f"{row['flops_per_second'] / 1e9:.1f} GFLOP/s = {row['fraction_of_matmul']:.0%} of matmul "
            f"({matmul_rate / 1e9:.1f} GFLOP/s)")
    if "forward_flops_per_second_ratio" in results:
        say(f"FLOP/s ratio ours / video-diffusion-pytorch: {results['forward_flops_per_second_ratio']:.2f}")
    if "training_step" in results:
        row = results["training_step"]
        say(f"training step batch {row['batch']}: {row['seconds']['median']:.2f} s, "
            f"{row['clips_per_second']:.2f} clips/s, {row['flops_per_second'] / 1e9:.1f} GFLOP/s "
            f"= {row['fraction_of_matmul']:.0%} of matmul")


if __name__ == "__main__":
    main()

"""Achieved FLOP/s of the transformer denoiser (``dit3d``), the U-Net (``unet3d``) and diffusers'
``LatteTransformer3DModel`` at the same width and depth, at the quickstart's and the paper's latent
shapes, forward and training step, each as a fraction of a matmul timed in the same run (issue 30).

    .venv/bin/python benchmarks/transformer_throughput.py [--threads 2] [--repeats 5] [--out FILE]
    PYTHONPATH=/tmp/latte_site .venv/bin/python benchmarks/transformer_throughput.py   # with the peer

The peer is diffusers' Latte (Ma et al. 2024), installed in its own folder, never as a vqvdm
dependency (without it its rows are skipped with a message)::

    .venv/bin/pip install --no-deps --target /tmp/latte_site diffusers importlib_metadata zipp regex \\
        huggingface_hub hf-xet httpx2 httpcore2 truststore

Shapes (latent ``c x t x h x w``; forward at the guided batch, training step at the recipe's batch):

* ``quickstart``: 4 x 8 x 8 x 8, forward batch 64 (the evaluate stage's 32 clips, guided), training
  batch 32; dit3d at the width the quickstart comparison uses (192, 6 blocks, 6 heads, patch 2),
  the quickstart's U-Net;
* ``paper``: 4 x 4 x 16 x 16, forward batch 2 (one guided clip, Table 3), training batch 8; dit3d
  as Latte-S (384, 12 blocks, 6 heads, patch 2), the paper recipe's U-Net (recipes/vqvdm_ucf101.yaml).

Latte runs at the same width, heads and depth (``num_layers`` = blocks / 2: it counts
spatial + temporal pairs), patch 2, its adaLN-single time modulation and one cross-attention token
(``plugins/example-plugin``'s wrapping). FLOPs are each network's own, counted by
``torch.utils.flop_counter`` (CPU flash attention included), so achieved FLOP/s compare how well each
implementation uses the machine, not how much work it does.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
import yaml

from _common import REPO, conditions, interleaved, paper_recipe_parser, say, write_json
from vqvdm_core import create
from vqvdm_core.profiling.measure import count_flops, matmul_flops_per_second

SHAPES = {
    "quickstart": {"latent": (4, 8, 8, 8), "forward_batch": 64, "train_batch": 32,
                   "dit3d": {"width": 192, "depth": 6, "heads": 6, "patch_size": 2},
                   "unet3d": REPO / "recipes" / "quickstart.yaml"},
    "paper": {"latent": (4, 4, 16, 16), "forward_batch": 2, "train_batch": 8,
              "dit3d": {"width": 384, "depth": 12, "heads": 6, "patch_size": 2},
              "unet3d": REPO / "recipes" / "vqvdm_ucf101.yaml"},
}


class LattePeer(torch.nn.Module):
    """diffusers' Latte called as a vqvdm denoiser would be (one cross-attention condition token)."""

    def __init__(self, *, width: int, depth: int, heads: int, patch_size: int, latent: tuple[int, ...]):
        super().__init__()
        from diffusers import LatteTransformer3DModel

        c, t, h, _ = latent
        self.model = LatteTransformer3DModel(
            num_attention_heads=heads, attention_head_dim=width // heads, in_channels=c, out_channels=c,
            num_layers=depth // 2, sample_size=h, patch_size=patch_size, video_length=t,
            cross_attention_dim=width, caption_channels=width)
        self.width = width

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.model(x, timestep=t, encoder_hidden_states=emb[:, None], return_dict=False)[0]


def networks(shape: dict[str, Any]) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    nets: dict[str, torch.nn.Module] = {"dit3d": create("denoiser", "dit3d", in_channels=4, **shape["dit3d"])}
    node = dict(yaml.safe_load(shape["unet3d"].read_text())["denoiser"])
    nets["unet3d"] = create("denoiser", node.pop("name"), in_channels=4,
                            **{k: v for k, v in node.items() if k != "known_frames"})
    try:
        nets["latte (diffusers)"] = LattePeer(**shape["dit3d"], latent=shape["latent"])
    except ImportError as exc:
        say(f"diffusers is not importable ({exc}): the peer's rows are skipped (see this script's docstring)")
    return nets


def emb_width(net: torch.nn.Module) -> int:
    return net.width if isinstance(net, LattePeer) else net.emb_dim


def main() -> None:
    parser = paper_recipe_parser(__doc__, repeats=5)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    results: dict[str, Any] = {"conditions": conditions(device), "shapes": {}}
    for shape_name in args.shapes:
        shape = SHAPES[shape_name]
        nets = networks(shape)
        gen = torch.Generator().manual_seed(0)
        inputs = {}
        for mode, batch in (("forward", shape["forward_batch"]), ("train step", shape["train_batch"])):
            x = torch.randn((batch, *shape["latent"]), generator=gen)
            inputs[mode] = (x, torch.randint(0, 1000, (batch,), generator=gen))
        calls, flops, params = {}, {}, {}
        for name, net in nets.items():
            params[name] = sum(p.numel() for p in net.parameters())
            optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def forward(net=net):
                x, t = inputs["forward"]
                with torch.no_grad():
                    net.eval()(x, t, torch.zeros(x.shape[0], emb_width(net)))

            def train_step(net=net, optimiser=optimiser):
                x, t = inputs["train step"]
                loss = net.train()(x, t, torch.zeros(x.shape[0], emb_width(net))).square().mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

            for mode, fn in (("forward", forward), ("train step", train_step)):
                with count_flops() as total:
                    fn()
                flops[(name, mode)] = total()
                calls[(name, mode)] = fn
        timed = {f"{n}|{m}": fn for (n, m), fn in calls.items()}
        say(f"[{shape_name}] timing {len(timed)} calls x {args.repeats} repeats")
        times = interleaved(timed, repeats=args.repeats, device=device, say=say)
        peak = matmul_flops_per_second(device, seconds=2.0)  # right after, on the same load
        rows = []
        for key, seconds in times.items():
            name, mode = key.split("|")
            median = statistics.median(seconds)
            achieved = flops[(name, mode)] / median
            rows.append({"network": name, "mode": mode, "parameters": params[name], "flops": flops[(name, mode)],
                         "seconds_median": median, "seconds_min": min(seconds), "seconds_max": max(seconds),
                         "flops_per_second": achieved, "fraction_of_matmul": achieved / peak})
        results["shapes"][shape_name] = {"latent": shape["latent"], "forward_batch": shape["forward_batch"],
                                         "train_batch": shape["train_batch"], "matmul_flops_per_second": peak,
                                         "rows": rows}
        print(f"\n{shape_name}: latent {'x'.join(map(str, shape['latent']))}, forward batch {shape['forward_batch']}, "
              f"train batch {shape['train_batch']}; fp32 1024^3 matmul {peak / 1e9:.1f} GFLOP/s")
        print("| network | mode | params | GFLOP | s (median) | GFLOP/s | of matmul |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['network']} | {r['mode']} | {r['parameters'] / 1e6:.2f} M | {r['flops'] / 1e9:.2f} | "
                  f"{r['seconds_median']:.3f} | {r['flops_per_second'] / 1e9:.1f} | {r['fraction_of_matmul']:.0%} |")
    write_json(results, args.out)


if __name__ == "__main__":
    main()

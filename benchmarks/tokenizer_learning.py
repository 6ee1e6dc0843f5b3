"""How fast does an autoencoder learn the quickstart's clips? ``vqgan3d`` against a plain conv AE.

Issue 7's diagnosis script. It trains, for a fixed number of steps with Adam and an L2 loss, either

* ``vqgan3d``: the quickstart recipe's tokenizer (``--set key=value`` overrides its config, e.g.
  ``temporal_factor=2`` or ``spatial_padding=zeros``), with (``--quantize``) or without its
  quantizer; ``--norm`` swaps every GroupNorm for nothing (``none``) or a per-position LayerNorm
  over channels (``channel``) after building, to test whether per-clip normalisation is what holds
  it back; or
* ``plain``: five 3D convolutions, no normalisation, no residual blocks -- two strided ``k4 s2``
  convolutions down (3 -> 32 -> 64 channels), a 3x3x3 convolution to the 4-channel latent and the
  mirror image up with transposed convolutions: 4x4x4 compression (the quickstart's tokenizer had
  it until 2026-11-24; it now uses 2x4x4, ``--set temporal_factor=4`` compares like with like),

on clips of the quickstart's ``synthetic_motion`` data, and prints the held-out PSNR (overall and
per FPS value: fast motion is the hard part) and the seconds per step every ``--every`` steps::

    OMP_NUM_THREADS=1 python benchmarks/tokenizer_learning.py --model plain --steps 400
    OMP_NUM_THREADS=1 python benchmarks/tokenizer_learning.py --model vqgan3d --quantize --steps 600
    OMP_NUM_THREADS=1 python benchmarks/tokenizer_learning.py --model vqgan3d --set temporal_factor=4
    # the LDM layout at the same widths (the quickstart tokenizer of 2026-11-23):
    OMP_NUM_THREADS=1 python benchmarks/tokenizer_learning.py --model vqgan3d --set num_res_blocks=1 \
        --set mid_blocks=2 --set norm_groups=4 --set upsample=nearest --set "channel_mults=[1,2,4]"

Reference points on these clips: a mid-grey output scores 10.0 dB, each clip's mean colour 17.8 dB.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvdm_core.recipe import Recipe, load_recipe

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"

Reconstruct = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``video -> (reconstruction, extra loss)``."""


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every position: ``(B, C, T, H, W)`` in and out."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def swap_norms(module: nn.Module, kind: str) -> None:
    """Replace every ``nn.GroupNorm`` under ``module`` by ``kind`` (``none`` or ``channel``)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, nn.Identity() if kind == "none" else ChannelLayerNorm(child.num_channels))
        else:
            swap_norms(child, kind)


def plain_autoencoder(latent_channels: int = 4) -> nn.Module:
    """``(B, 3, T, H, W)`` -> same shape through a ``(B, latent_channels, T/4, H/4, W/4)`` latent."""
    return nn.Sequential(
        nn.Conv3d(3, 32, 4, stride=2, padding=1), nn.SiLU(),   # -> (B, 32, T/2, H/2, W/2)
        nn.Conv3d(32, 64, 4, stride=2, padding=1), nn.SiLU(),  # -> (B, 64, T/4, H/4, W/4)
        nn.Conv3d(64, latent_channels, 3, padding=1),           # the latent
        nn.Conv3d(latent_channels, 64, 3, padding=1), nn.SiLU(),
        nn.ConvTranspose3d(64, 32, 4, stride=2, padding=1), nn.SiLU(),
        nn.ConvTranspose3d(32, 3, 4, stride=2, padding=1),
    )


def build(args: argparse.Namespace, recipe: Recipe) -> tuple[nn.Module, Reconstruct]:
    """The model and ``reconstruct(video) -> (recon, extra_loss)``."""
    if args.model == "plain":
        net = plain_autoencoder(recipe.tokenizer.config.latent_channels)
        return net, lambda video: (net(video), video.new_zeros(()))
    tokenizer = recipe.tokenizer.build("tokenizer")
    if args.norm != "group":
        swap_norms(tokenizer, args.norm)
    if args.quantize:
        def reconstruct(video: Tensor) -> tuple[Tensor, Tensor]:
            recon, quant = tokenizer.reconstruct(video, update_codebook=tokenizer.training)
            return recon, quant.loss
    else:
        def reconstruct(video: Tensor) -> tuple[Tensor, Tensor]:
            return tokenizer.decoder(tokenizer.encoder(video)), video.new_zeros(())
    return tokenizer, reconstruct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["vqgan3d", "plain"], default="vqgan3d")
    parser.add_argument("--norm", choices=["group", "none", "channel"], default="group")
    parser.add_argument("--quantize", action="store_true", help="vqgan3d: train through the quantizer")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--clips", type=int, default=512, help="training clips (rendered once)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override of the quickstart recipe's tokenizer config, e.g. temporal_factor=2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(QUICKSTART, [*(f"tokenizer.{o}" for o in args.overrides),
                                      f"data.train.num_clips={args.clips}", "data.val.num_clips=48"])
    train_set = recipe.data.train.build("dataset")
    val_set = recipe.data.val.build("dataset")
    train = torch.stack([train_set[i]["video"] for i in range(len(train_set))])
    val = torch.stack([val_set[i]["video"] for i in range(len(val_set))])
    val_fps = torch.tensor([val_set[i]["fps"] for i in range(len(val_set))])

    torch.manual_seed(0)
    model, reconstruct = build(args, recipe)
    params = (model.optimizer_groups()["generator"] if args.model == "vqgan3d"  # not the discriminator
              else list(model.parameters()))
    print(json.dumps({"model": args.model, "norm": args.norm, "quantize": args.quantize, "lr": args.lr,
                      "batch": args.batch, "overrides": args.overrides, "threads": torch.get_num_threads(),
                      "parameters": sum(p.numel() for p in params)}), flush=True)
    optimizer = torch.optim.Adam(params, lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    train_time = 0.0
    for step in range(1, args.steps + 1):
        video = train[torch.randint(0, len(train), (args.batch,), generator=generator)]
        start = time.perf_counter()
        recon, extra = reconstruct(video)
        loss = F.mse_loss(recon, video) + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_time += time.perf_counter() - start
        if step % args.every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                errors = ((reconstruct(val)[0].clamp(-1, 1) - val) ** 2).flatten(1).mean(1)
            model.train()
            per_fps = {f"{fps:g}": round(10 * math.log10(4 / float(errors[val_fps == fps].mean())), 2)
                       for fps in sorted(set(val_fps.tolist()))}
            print(json.dumps({"step": step, "seconds_per_step": round(train_time / step, 4),
                              "val_psnr": round(10 * math.log10(4 / float(errors.mean())), 2),
                              "val_psnr_by_fps": per_fps}), flush=True)


if __name__ == "__main__":
    main()

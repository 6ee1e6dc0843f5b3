"""`vqvdm run` under torchrun: two processes on the CPU (gloo) run the training stages together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from standins import real_tiny_recipe

TINY = real_tiny_recipe(name="ddp")

needs_torchrun = pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                                    reason="torchrun is not installed next to this Python")


@needs_torchrun
def test_torchrun_two_processes_run_the_training_stages(tmp_path):
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "vqvdm_core", "run", str(recipe)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    for stage in TINY["stages"]:
        assert json.loads((run / stage / "stage.json").read_text())["status"] == "done"
    assert (run / "tokenizer" / "tokenizer.safetensors").is_file()
    assert (run / "denoiser" / "denoiser.safetensors").is_file()
    info = json.loads((run / "latents" / "stage.json").read_text())["info"]
    assert info["count"] == 8 and info["latent_shape"] == [4, 2, 4, 4]
    # Only rank 0 reports: each stage is announced once.
    assert proc.stdout.count("[denoiser] done") == 1


# The quickstart recipe itself, shrunk to 20 steps per training stage on 256 clips: every random
# draw of a training step (noise, time steps, condition dropout, known-frame prefixes, codebook
# initialisation and re-seeded rows) must come out the same whether one process or two share the batch.
SHRINK = [
    "data.train.num_clips=256",
    "train.tokenizer.steps=20", "train.tokenizer.log_every=5", "train.tokenizer.val_clips=0",
    "train.tokenizer.ckpt_every=20",
    "train.denoiser.steps=20", "train.denoiser.log_every=5", "train.denoiser.val_clips=0",
    "train.denoiser.ckpt_every=20",
]
QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def _run_quickstart(output_dir: Path, processes: int, *stages: str, sets: list[str] = SHRINK) -> Path:
    # CPU tests: the device pinned (the recipe's `auto` would make them CUDA runs on a GPU machine), and
    # the backend left to follow it (gloo), as a user's CPU run gets it.
    args = ["run", str(QUICKSTART), *[a for st in stages for a in ("--stage", st)],
            "--set", f"output_dir={output_dir}", "--set", "device=cpu", *[a for s in sets for a in ("--set", s)]]
    env = {k: v for k, v in os.environ.items() if k != "VQVDM_DIST_BACKEND"} | {"OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "vqvdm_core", *args]
    else:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node",
               str(processes), "-m", "vqvdm_core", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "random generators diverged" not in proc.stdout + proc.stderr
    return output_dir / "quickstart"


def _train_records(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["tag"] == "train"]


def _largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> tuple[float, str]:
    return max((float((a[k].double() - b[k].double()).abs().max()), k) for k in keys)


def _largest_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> tuple[float, str]:
    """The largest ``||a - b|| / ||a||`` (Frobenius norms) over ``keys``, and its key."""
    return max((float((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp_min(1e-30)), k)
               for k in keys)


def _assert_same_logs(one: Path, two: Path, keys: tuple[str, ...], *, steps: list[int], rtol: float) -> None:
    logs = [_train_records(run / "metrics.jsonl") for run in (one, two)]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == steps
    for r1, r2 in zip(*logs):
        for key in keys:
            assert abs(r1[key] - r2[key]) <= rtol * max(1.0, abs(r1[key])), (one.name, r1["step"], key, r1[key], r2[key])


# Without shards the runs agree up to rounding, and the tokenizer's training amplifies rounding:
# its codebook's nearest-code decisions flip on near-ties (from the first steps on), and a flipped
# code moves the encoder (straight through) and the codebook's statistics. In the quickstart's
# tokenizer the logged losses of 1 and 2 processes part by ~5e-7 at step 5 and ~5e-5 at step 20, the
# weights by up to 5e-5 (AMD EPYC, AVX2; < 1e-5 on an Intel Xeon): a fixed bound after 20 steps holds
# on one CPU and not on another (docs/engine.md). After 5 steps the weights differ by <= 6e-6 of
# their norm while training has moved them by ~2e-2 of it, which is what a draw or data mismatch
# between the processes would change: the bound of 1e-4 sits over an order of magnitude from either.
# The denoiser makes no decisions and stays at rounding (<= 1.2e-7 after 20 steps). Bit for bit on
# any CPU: the sharded test below.
DEFAULT_PATH = [
    "data.train.num_clips=256",
    "train.tokenizer.steps=5", "train.tokenizer.log_every=1", "train.tokenizer.val_clips=0",
    "train.tokenizer.ckpt_every=5",
    "train.denoiser.steps=20", "train.denoiser.log_every=5", "train.denoiser.val_clips=0",
    "train.denoiser.ckpt_every=20",
]
ROUNDING = 1e-4  # relative difference of a tensor (Frobenius), of a logged loss


@needs_torchrun
def test_quickstart_training_is_the_same_on_one_or_two_processes(tmp_path):
    from safetensors.torch import load_file

    # Tokenizer stage: 1 process vs 2.
    one = _run_quickstart(tmp_path / "one", 1, "tokenizer", "latents", sets=DEFAULT_PATH)
    two = _run_quickstart(tmp_path / "two", 2, "tokenizer", sets=DEFAULT_PATH)
    a, b = (load_file(run / "tokenizer" / "tokenizer.safetensors") for run in (one, two))
    assert a.keys() == b.keys()
    params = [k for k in a if a[k].is_floating_point() and not k.startswith("quantizer.")]
    worst, key = _largest_relative_difference(a, b, params)
    assert worst <= ROUNDING, f"tokenizer weight {key} differs by {worst:.2e} of its norm"
    # The codebook, initialised from the first global batch's vectors and updated from global counts
    # and sums: a near-tie flip moves one vector's count from a code to another (measured after 5
    # steps: 1.7e-5 of the counts, the codebook by 2.3e-5 of its norm), and the counts add up to the
    # same total (the EMA of a global batch's number of vectors) whatever the decisions.
    counts = a["quantizer.ema_count"], b["quantizer.ema_count"]
    assert torch.allclose(counts[0].sum(), counts[1].sum(), rtol=1e-6)
    assert float((counts[0] - counts[1]).abs().sum() / counts[0].sum()) <= 1e-3
    worst, key = _largest_relative_difference(a, b, ["quantizer.codebook"])
    assert worst <= 1e-3, f"codebook differs by {worst:.2e} of its norm"
    _assert_same_logs(one / "tokenizer", two / "tokenizer", ("loss/generator", "l2", "commitment"),
                      steps=[1, 2, 3, 4, 5], rtol=ROUNDING)

    # Denoiser stage on the same tokenizer and latents: 1 process vs 2.
    shutil.copytree(tmp_path / "one", tmp_path / "shared")
    shared = tmp_path / "shared" / "quickstart"
    one = _run_quickstart(tmp_path / "one", 1, "denoiser", sets=DEFAULT_PATH)
    two = _run_quickstart(tmp_path / "shared", 2, "denoiser", sets=DEFAULT_PATH)
    assert shared == two
    ema = [load_file(run / "denoiser" / "denoiser.safetensors") for run in (one, two)]
    worst, key = _largest_relative_difference(*ema, [k for k in ema[0] if ema[0][k].is_floating_point()])
    assert worst <= ROUNDING, f"denoiser EMA tensor {key} differs by {worst:.2e} of its norm"
    raw = [torch.load(run / "denoiser" / "checkpoints" / "last.pt", weights_only=True)["model"] for run in (one, two)]
    worst, key = _largest_relative_difference(*raw, [k for k in raw[0] if raw[0][k].is_floating_point()])
    assert worst <= ROUNDING, f"denoiser tensor {key} differs by {worst:.2e} of its norm"
    _assert_same_logs(one / "denoiser", two / "denoiser", ("loss/denoiser", "loss", "known_fraction"),
                      steps=[5, 10, 15, 20], rtol=ROUNDING)


# The same, computed as 2 shards (one process: both, one after the other; two processes: one each),
# with the GAN switched on for the last 10 tokenizer steps: the same operations on the same tensors,
# so the same bits -- the codebook's buffers included.
SHARDED = [*SHRINK, "train.tokenizer.shards=2", "train.denoiser.shards=2", "tokenizer.discriminator_start=10"]


@needs_torchrun
def test_sharded_quickstart_training_is_bit_identical_on_one_or_two_processes(tmp_path):
    from safetensors.torch import load_file

    one = _run_quickstart(tmp_path / "one", 1, "tokenizer", "latents", sets=SHARDED)
    two = _run_quickstart(tmp_path / "two", 2, "tokenizer", sets=SHARDED)
    a, b = (load_file(run / "tokenizer" / "tokenizer.safetensors") for run in (one, two))
    assert a.keys() == b.keys() and {"quantizer.codebook", "quantizer.ema_count"} <= a.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    state = [torch.load(run / "tokenizer" / "checkpoints" / "last.pt", weights_only=True)["model"]
             for run in (one, two)]
    assert any(k.startswith("discriminator.") for k in state[0])
    assert [k for k in state[0] if not torch.equal(state[0][k], state[1][k])] == []
    logs = [_train_records(run / "tokenizer" / "metrics.jsonl") for run in (one, two)]
    assert logs[0][-1]["loss/discriminator"] > 0  # the GAN trained
    assert [r["loss/generator"] for r in logs[0]] == [r["loss/generator"] for r in logs[1]]
    assert [r["loss/discriminator"] for r in logs[0]] == [r["loss/discriminator"] for r in logs[1]]

    shutil.copytree(tmp_path / "one", tmp_path / "shared")
    one = _run_quickstart(tmp_path / "one", 1, "denoiser", sets=SHARDED)
    two = _run_quickstart(tmp_path / "shared", 2, "denoiser", sets=SHARDED)
    ema = [load_file(run / "denoiser" / "denoiser.safetensors") for run in (one, two)]
    assert [k for k in ema[0] if not torch.equal(ema[0][k], ema[1][k])] == []
    raw = [torch.load(run / "denoiser" / "checkpoints" / "last.pt", weights_only=True)["model"] for run in (one, two)]
    assert [k for k in raw[0] if not torch.equal(raw[0][k], raw[1][k])] == []
    logs = [_train_records(run / "denoiser" / "metrics.jsonl") for run in (one, two)]
    assert [r["loss/denoiser"] for r in logs[0]] == [r["loss/denoiser"] for r in logs[1]]

"""Prove the CUDA path on one GPU and measure it: everything ``scripts/gpu-check.sh`` runs (issue 28).

    python benchmarks/gpu_check.py --out gpu_check.json [--device cuda] [--budget 540] [--quick]

Each part is timed and recorded in one JSON file, and a part that fails is recorded with its error
while the rest still run, so one call of a few minutes on a lent GPU gives every answer at once:

* ``environment``: the GPU, its memory, torch and CUDA versions, the runtime flags;
* ``attention_batch_limit``: whether the fused attention kernels take 65,536 sequences and more
  (PyTorch issues 142228, 146704) and whether :func:`~vqvdm_plugins.batched_attention.batched_attention`
  matches one call where one call works;
* ``device_tests``: ``pytest tests/device --device cuda`` (training, AMP with the scaler, samplers
  against the CPU, long videos, export, resume of a GPU checkpoint on the CPU, the metric networks,
  sharded determinism);
* ``host_syncs``: the real tokenizer's and denoiser's training steps under
  ``torch.cuda.set_sync_debug_mode("warn")``: every host synchronisation inside a step after the
  first, by source line (the target is none);
* ``quickstart_fp32`` / ``quickstart_bf16``: the quickstart recipe on the GPU with its training
  shortened (``--quick``: shorter still), each stage's seconds and the evaluate stage's scores;
  then ``vqvdm sample`` of the fp32 run on the GPU and on the CPU, and ``vqvdm export``;
* ``table3``: ``vqvdm bench recipes/vqvdm_ucf101.yaml --device cuda`` in absolute seconds, beside
  the paper's 3.95 s (latent) and 35.26 s (pixel space);
* ``training_step_fp32`` / ``training_step_bf16``: ``benchmarks/training_step.py`` at the paper's
  shapes: seconds, clips/s, FLOP/s and peak memory of a denoiser and a tokenizer step;
* ``data_feed``: ``benchmarks/data_throughput.py``: clips/s the file data sets deliver, per worker
  count, against what the training step above consumes.

``--device cpu --quick`` runs the same on the CPU, in small: how this script itself is tested.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAPER_TABLE3 = {"latent_seconds": 3.95, "pixel_seconds": 35.26, "ratio": 35.26 / 3.95}


def environment(device: torch.device) -> dict[str, Any]:
    from vqvdm_core.runtime.backend_policy import current_policy

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_runtime": torch.version.cuda, "device": str(device), "policy": current_policy()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)
        out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    else:
        out["cpu"] = platform.processor() or platform.machine()
    return out


def attention_batch_limit(device: torch.device, quick: bool) -> dict[str, Any]:
    import torch.nn.functional as F

    from vqvdm_plugins.batched_attention import batched_attention

    out: dict[str, Any] = {}
    sizes = [65_535, 65_536, 131_072] if not quick else [1_000, 4_000]
    for dtype in (torch.float32, torch.bfloat16):
        for n in sizes:
            q = torch.randn(n, 2, 8, 32, device=device, dtype=dtype)
            key = f"{str(dtype).split('.')[-1]}_{n}"
            try:
                plain = F.scaled_dot_product_attention(q, q, q, is_causal=True)
                out[f"one_call_{key}"] = "ok"
            except RuntimeError as exc:
                plain = None
                out[f"one_call_{key}"] = f"error: {str(exc)[:200]}"
            chunked = batched_attention(q, q, q, causal=True, max_sequences=None if not quick else 999)
            out[f"batched_{key}"] = "ok"
            if plain is not None:
                out[f"batched_max_difference_{key}"] = float((chunked.float() - plain.float()).abs().max())
            del q, plain, chunked
    return out


def device_tests(device: torch.device, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", str(device),
           "tests/device", "tests/engine/test_backend_policy.py", "tests/plugins/test_batched_attention.py"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    tail = proc.stdout.strip().splitlines()[-12:]
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary": tail[-1] if tail else "",
            "tail": tail, "stderr_tail": proc.stderr.strip().splitlines()[-5:]}


def host_syncs(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    """Host synchronisations inside the training steps (after the first) of both stages."""
    from rich.console import Console

    from vqvdm_core.engine.batches import InfiniteLoader
    from vqvdm_core.engine.trainer import Trainer
    from vqvdm_core.pipeline import run_recipe
    from vqvdm_core.recipe import load_recipe

    sys.path.insert(0, str(REPO / "tests" / "engine"))
    from test_host_reads import RECIPE

    seen: Counter[str] = Counter()
    inside = [False]
    step, following = Trainer._optimizer_step, InfiniteLoader.__next__

    def counted(self, loader):
        inside[0] = self.step >= 1
        try:
            return step(self, loader)
        finally:
            inside[0] = False

    def next_batch(self):
        was, inside[0] = inside[0], False
        try:
            return following(self)
        finally:
            inside[0] = was

    original_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if inside[0] and "synchroniz" in str(message).lower():
            seen[f"{Path(filename).name}:{lineno}"] += 1
            return
        original_show(message, category, filename, lineno, file, line)

    Trainer._optimizer_step, InfiniteLoader.__next__ = counted, next_batch
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.simplefilter("always")
            warnings.showwarning = show
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            recipe = load_recipe({**RECIPE, "device": str(device), "output_dir": str(work / "syncs")})
            run_recipe(recipe, console=Console(file=open(os.devnull, "w")))
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
        Trainer._optimizer_step, InfiniteLoader.__next__ = step, following
    return {"synchronisations_in_steps_after_the_first": sum(seen.values()), "by_line": dict(seen.most_common()),
            "measured": device.type == "cuda"}


def _vqvdm(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vqvdm_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, "VQVDM_DEBUG": "1"})


def quickstart(device: torch.device, quick: bool, work: Path, precision: str) -> dict[str, Any]:
    name = f"gpu_{precision}"
    steps = ["--set", "train.tokenizer.steps=60", "--set", "train.denoiser.steps=40",
             "--set", "evaluate.num_samples=32"] if quick else \
        ["--set", "train.tokenizer.steps=600", "--set", "train.denoiser.steps=400"]
    sets = ["--set", f"device={device}", "--set", f"name={name}", "--set", f"output_dir={work / 'runs'}", *steps]
    for part in ("train.tokenizer", "train.denoiser", "latents", "sample", "evaluate"):
        sets += ["--set", f"{part}.precision={precision}"]
    start = time.perf_counter()
    proc = _vqvdm("run", "recipes/quickstart.yaml", *sets, timeout=420)
    run = work / "runs" / name
    out: dict[str, Any] = {"returncode": proc.returncode, "wall_seconds": round(time.perf_counter() - start, 1),
                           "tail": proc.stdout.strip().splitlines()[-6:] + proc.stderr.strip().splitlines()[-6:]}
    stages = {}
    for stage in ("tokenizer", "latents", "denoiser", "sample", "evaluate"):
        record = run / stage / "stage.json"
        if record.is_file():
            info = json.loads(record.read_text())
            stages[stage] = {"status": info.get("status"), "seconds": (info.get("info") or {}).get("seconds")}
    out["stages"] = stages
    metrics = run / "evaluate" / "metrics.json"
    if metrics.is_file():
        out["evaluate"] = json.loads(metrics.read_text())
    if precision == "fp32" and proc.returncode == 0:
        for where in (str(device), "cpu"):
            sample = _vqvdm("sample", str(run), "--device", where, "--num", "1", "--steps", "8",
                            "--out", str(work / f"sample_{where.replace(':', '')}.mp4"), timeout=180)
            out[f"sample_on_{where}"] = {"returncode": sample.returncode, "tail": sample.stderr.strip().splitlines()[-3:]}
        export = _vqvdm("export", str(run), str(work / "export"), timeout=120)
        out["export"] = {"returncode": export.returncode, "tail": export.stderr.strip().splitlines()[-3:]}
    return out


def table3(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    args = ["bench", "recipes/vqvdm_ucf101.yaml", "--set", "tokenizer.perceptual_weight=0", "--device", str(device),
            "--json", "--repeats", "1" if quick else "3"]
    if quick:
        args += ["--steps", "2", "--set", "tokenizer.channels=16", "--set", "denoiser.channels=16"]
    proc = _vqvdm(*args, timeout=300)
    out: dict[str, Any] = {"returncode": proc.returncode, "paper": PAPER_TABLE3, "command": "vqvdm " + " ".join(args)}
    try:
        out["report"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["tail"] = proc.stderr.strip().splitlines()[-8:]
    return out


def _json_script(args: list[str], target: Path) -> dict[str, Any]:
    """Run a benchmark script that writes ``target``; its JSON, or the end of its error output."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    out: dict[str, Any] = {"returncode": proc.returncode, "command": " ".join(args)}
    if target.is_file():
        out["result"] = json.loads(target.read_text())
    else:
        out["tail"] = proc.stderr.strip().splitlines()[-8:]
    return out


def training_step(device: torch.device, quick: bool, work: Path, precision: str) -> dict[str, Any]:
    target = work / f"training_step_{precision}.json"
    args = ["benchmarks/training_step.py", "--device", str(device), "--precision", precision, "--tokenizer",
            "--out", str(target)]
    args += (["--recipe", "recipes/quickstart.yaml", "--batch", "2", "--repeats", "1"] if quick
             else ["--batch", "8", "--tokenizer-batch", "2", "--repeats", "3"])
    return _json_script(args, target)


def data_feed(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    target = work / "data_feed.json"
    args = ["benchmarks/data_throughput.py", "--out", str(target), "--folder", str(work / "videos")]
    if quick:
        args += ["--videos", "2", "--video-frames", "40", "--clips", "8", "--workers", "0", "1"]
    return _json_script(args, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds; parts not started by then are skipped")
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU test of this script)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these parts")
    parser.add_argument("--work", type=Path, default=None, help="folder for runs (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="vqvdm-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    q = args.quick
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: environment(device),
        "attention_batch_limit": lambda: attention_batch_limit(device, q),
        "device_tests": lambda: device_tests(device, q),
        "host_syncs": lambda: host_syncs(device, q, work),
        "training_step_bf16": lambda: training_step(device, q, work, "bf16"),
        "training_step_fp32": lambda: training_step(device, q, work, "fp32"),
        "table3": lambda: table3(device, q, work),
        "quickstart_fp32": lambda: quickstart(device, q, work, "fp32"),
        "quickstart_bf16": lambda: quickstart(device, q, work, "bf16"),
        "data_feed": lambda: data_feed(device, q, work),
    }
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(device), "quick": q,
                              "parts": {}}
    begin = time.perf_counter()
    for name, part in parts.items():
        if args.only is not None and name not in args.only:
            continue
        if time.perf_counter() - begin > args.budget:
            report["parts"][name] = {"skipped": f"the budget of {args.budget:.0f} s was spent"}
            continue
        start = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            result = part()
        except Exception as exc:  # recorded; the next part still runs
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        result["part_seconds"] = round(time.perf_counter() - start, 1)
        report["parts"][name] = result
        args.out.write_text(json.dumps(report, indent=1, default=str))  # what is done survives a timeout
        print(f"[gpu-check] {name} done in {result['part_seconds']} s", flush=True)
    report["seconds"] = round(time.perf_counter() - begin, 1)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    failed = [n for n, r in report["parts"].items() if "error" in r or r.get("returncode", 0) != 0]
    print(f"[gpu-check] wrote {args.out}; parts with errors: {', '.join(failed) or 'none'}", flush=True)


if __name__ == "__main__":
    main()

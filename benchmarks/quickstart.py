"""Run the quickstart end to end and check the quality and time targets (issues 7 and 20).

    python benchmarks/quickstart.py                 # runs recipes/quickstart.yaml into runs/
    python benchmarks/quickstart.py --run runs/quickstart --no-run   # only check an existing run
    python benchmarks/quickstart.py --no-run --wall-seconds 431     # ... with a wall time measured outside

Measures wall time and peak memory of the whole `vqvdm run` (through `/usr/bin/time -v` when
available), then reads the run's outputs and checks:

- wall time <= 12 minutes (``/usr/bin/time`` around ``vqvdm run``; with ``--no-run``, the time given
  by ``--wall-seconds``, else the stages' own times from their ``stage.json`` records, which leave out
  the start-up of about ten seconds);
- motion-probe class accuracy >= 0.90 at the recipe's guidance scale, and higher than at w = 0;
- |Spearman correlation| between requested FPS and measured speed >= 0.8;
- tokenizer PSNR on held-out clips >= 30 dB (the tokenizer stage's last validation);
- at least 256 generated clips scored;
- at most 10 denoiser calls per clip (a guided pair counts once), for runs that record it.

Prints a table with the time of each stage and the CPU (model and SIMD flags: the time depends on
them, e.g. about 2x between an AVX512 Xeon and an AVX2-only EPYC) and writes `<run>/targets.json`;
exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WALL_TARGET_SECONDS = 12 * 60
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_description() -> dict[str, object]:
    """The CPU's model name, core count and the SIMD flags that move CPU training speed."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cpus": os.cpu_count(), "simd": [f for f in SIMD_FLAGS if f in flags]}


def stage_seconds(run: Path) -> dict[str, float]:
    """Each finished stage's time from its record, in run order."""
    records = sorted((json.loads(p.read_text()) for p in run.glob("*/stage.json")),
                     key=lambda rec: rec.get("started", 0))
    return {rec["stage"]: rec["finished"] - rec["started"] for rec in records
            if rec.get("status") == "done" and rec.get("finished")}


def run_quickstart(recipe: Path, extra: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "vqvdm_core.cli", "run", str(recipe), *extra]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    start = time.perf_counter()
    if timer:
        proc = subprocess.run([timer, "-v", *cmd], cwd=REPO, stderr=subprocess.PIPE, text=True)
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr or "")
        peak_gb = int(peak.group(1)) / 2**20 if peak else float("nan")
    else:
        proc = subprocess.run(cmd, cwd=REPO)
        peak_gb = float("nan")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"vqvdm run failed with exit code {proc.returncode}")
    return {"wall_seconds": wall, "peak_rss_gb": peak_gb}


def check(run: Path, measured: dict[str, float], guidance: float) -> list[tuple[str, float, str, bool]]:
    report = json.loads((run / "evaluate" / "metrics.json").read_text())
    by_scale = {r["guidance_scale"]: r for r in report["results"]}
    probe = by_scale[guidance]["values"]["motion_probe"]
    probe0 = by_scale.get(0.0, {}).get("values", {}).get("motion_probe", {})
    tok = json.loads((run / "tokenizer" / "metrics.json").read_text())
    psnr = float(tok.get("val/psnr", float("nan")))
    rows = [
        ("class accuracy at w=%g" % guidance, probe["class_accuracy"], ">= 0.90", probe["class_accuracy"] >= 0.90),
        ("class accuracy at w=0", probe0.get("class_accuracy", float("nan")), "< the above",
         probe0.get("class_accuracy", 1.0) < probe["class_accuracy"]),
        ("|FPS-speed Spearman|", abs(probe["fps_speed_spearman"]), ">= 0.8", abs(probe["fps_speed_spearman"]) >= 0.8),
        ("object persistence", probe.get("persistence", float("nan")), "(reported)", True),
        ("tokenizer PSNR (dB)", psnr, ">= 30", psnr >= 30),
        ("clips scored", by_scale[guidance]["num_samples"], ">= 256", by_scale[guidance]["num_samples"] >= 256),
    ]
    calls = by_scale[guidance].get("denoiser_calls")  # recorded since samplers became plug-ins
    if calls is not None:
        rows.append(("denoiser calls per clip (%s)" % by_scale[guidance].get("sampler"), calls, "<= 10",
                     calls <= 10))
    target = f"<= {WALL_TARGET_SECONDS}"
    if "wall_seconds" in measured:
        rows.append(("wall time (s)", measured["wall_seconds"], target, measured["wall_seconds"] <= WALL_TARGET_SECONDS))
    else:
        total = sum(stage_seconds(run).values())
        rows.append(("stage times, summed (s)", total, target, total <= WALL_TARGET_SECONDS))
    if "peak_rss_gb" in measured:
        rows.append(("peak RSS (GB)", measured["peak_rss_gb"], "(reported)", True))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "quickstart.yaml")
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "quickstart")
    parser.add_argument("--no-run", action="store_true", help="only check an existing run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override")
    parser.add_argument("--wall-seconds", type=float, default=None,
                        help="with --no-run: the run's wall time measured outside (e.g. by /usr/bin/time)")
    args = parser.parse_args()
    measured: dict[str, float] = {}
    if not args.no_run:
        extra = [a for o in args.overrides for a in ("--set", o)]
        measured = run_quickstart(args.recipe, extra)
    elif args.wall_seconds is not None:
        measured = {"wall_seconds": args.wall_seconds}
    import yaml

    recipe = yaml.safe_load((args.run / "recipe.yaml").read_text())
    scales = recipe["evaluate"].get("guidance_scales") or [recipe["guidance"].get("scale", 1.0)]
    rows = check(args.run, measured, max(scales))
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:>10.4g}  {target:<12} {'ok' if ok else 'MISSED'}")
    stages = stage_seconds(args.run)
    cpu = cpu_description()
    print("stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))
    print(f"cpu: {cpu['model']}, {cpu['cpus']} cpus, {' '.join(cpu['simd']) or 'no AVX2'}")
    out = {"measured": measured, "stage_seconds": stages, "cpu": cpu,
           "checks": [dict(zip(("name", "value", "target", "ok"), r)) for r in rows]}
    (args.run / "targets.json").write_text(json.dumps(out, indent=2, default=str))
    sys.exit(0 if all(r[3] for r in rows) else 1)


if __name__ == "__main__":
    main()

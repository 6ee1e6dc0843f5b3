"""``benchmarks/independent_ddpm.py``: its own schedule agrees with the library's, and a tiny run reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "independent_ddpm.py"


def test_its_cosine_schedule_matches_the_librarys_ddpm_cosine_schedule(load_benchmark):
    from vqvdm_plugins.schedules.ddpm import DDPMSchedule

    ours = load_benchmark("independent_ddpm").cosine_alphas_cumprod(1000)
    library = DDPMSchedule(beta_schedule="cosine").alphas_cumprod
    # The library caps each beta at 0.999 (Nichol & Dhariwal), which only bites at the last steps.
    torch.testing.assert_close(ours[:990], library[:990], rtol=1e-9, atol=1e-12)


def test_a_tiny_run_prints_the_ceiling_then_one_probe_per_interval(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "2", "--every", "2", "--samples", "8", "--frames", "2",
         "--channels", "8", "--batch-size", "4", "--threads", "1", "--save", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [line["step"] for line in lines] == [0, 2]
    assert lines[0]["training_clips"]["class_accuracy"] > 0.9
    assert lines[1]["loss"] > 0 and {"w=0", "w=3"} <= set(lines[1])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["step000002_w0.png", "step000002_w3.png"]

"""scripts/gpu-check.sh's driver runs its parts and writes one JSON file (here on the CPU, in small)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_check_driver_runs_the_parts_asked_for_and_records_each(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out),
           "--work", str(tmp_path / "work"), "--only", "environment", "attention_batch_limit", "host_syncs",
           "data_feed"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = json.loads(out.read_text())["parts"]
    assert list(parts) == ["environment", "attention_batch_limit", "host_syncs", "data_feed"]
    assert parts["environment"]["device"] == "cpu"
    assert parts["attention_batch_limit"]["batched_max_difference_float32_1000"] == 0.0
    assert parts["host_syncs"]["synchronisations_in_steps_after_the_first"] == 0
    feed = parts["data_feed"]["result"]
    assert feed["source"]["width"] == 320 and set(feed["formats"]) == {"avi", "mp4"}
    assert all(row["clips_per_second"] > 0 for rows in feed["formats"].values() for row in rows)

"""``benchmarks/motion_learning.py``: the synthetic latents are what it says, and a tiny run reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "motion_learning.py"


def _load_script():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import motion_learning
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return motion_learning


def test_synthetic_latents_move_the_object_by_the_class_direction_and_fps_speed():
    ml = _load_script()
    latent, label, fps = ml.synthetic_latents(
        64, generator=torch.Generator().manual_seed(0), channels=4, frames=4, size=8, num_classes=4,
        fps_values=[4.0, 8.0], cells_per_second=4.0, object_cells=2.0)
    assert latent.shape == (64, 4, 4, 8, 8)
    # Background and object are unit vectors: every position's vector is a blend of the two.
    assert torch.all(latent.norm(dim=1) <= 1.0 + 1e-5)
    for i in range(64):
        background = latent[i].flatten(1).median(dim=1).values[:, None, None, None]
        distance = (latent[i] - background).norm(dim=0)  # (T, H, W): the object's coverage
        shift = (_centroid(distance[1]) - _centroid(distance[0]) + 4) % 8 - 4  # cells, on the torus
        step = 4.0 / float(fps[i])
        theta = 2 * math.pi * int(label[i]) / 4
        expected = torch.tensor([step * math.cos(theta), -step * math.sin(theta)])  # +y points down
        torch.testing.assert_close(shift, expected, atol=0.15, rtol=0)


def _centroid(frame: torch.Tensor) -> torch.Tensor:
    """Circular (torus) centroid ``(x, y)`` in cells of an ``(8, 8)`` map."""
    angles = (torch.arange(8) + 0.5) * 2 * math.pi / 8
    x = torch.atan2((frame.sum(0) * angles.sin()).sum(), (frame.sum(0) * angles.cos()).sum())
    y = torch.atan2((frame.sum(1) * angles.sin()).sum(), (frame.sum(1) * angles.cos()).sum())
    return torch.stack([x, y]) * 8 / (2 * math.pi)


def test_a_tiny_run_prints_the_ceiling_then_one_probe_per_interval():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "2", "--every", "2", "--samples", "8", "--frames", "4",
         "--size", "4", "--threads", "1", "--set", "denoiser.channels=8", "--set", "evaluate.steps=2"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [line["step"] for line in lines] == [0, 2]
    assert set(lines[0]["training_clips"]) == {"class_accuracy", "fps_speed_spearman", "mean_speed_px",
                                               "persistence"}
    assert {"w=0", "w=3"} <= set(lines[1]) and lines[1]["w=3"]["std_ratio"] > 0

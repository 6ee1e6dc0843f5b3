"""``benchmarks/motion_learning.py``: the synthetic latents are what it says, and a tiny run reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "motion_learning.py"


def test_synthetic_latents_move_the_object_by_the_class_direction_and_fps_speed(load_benchmark):
    ml = load_benchmark("motion_learning")
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


def test_fixed_colours_give_every_clip_the_same_background_and_object_vectors(load_benchmark):
    ml = load_benchmark("motion_learning")
    background, foreground = torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0])
    latent, _, _ = ml.synthetic_latents(
        8, generator=torch.Generator().manual_seed(0), channels=4, frames=2, size=8, num_classes=4,
        fps_values=[4.0], cells_per_second=4.0, object_cells=3.0, colours=(background, foreground))
    vectors = latent.permute(0, 2, 3, 4, 1).reshape(-1, 4)  # every position's vector
    # Each is (1 - coverage) * background + coverage * object, with coverage in [0, 1].
    coverage = vectors[:, 1]
    torch.testing.assert_close(vectors, (1 - coverage)[:, None] * background + coverage[:, None] * foreground)
    assert coverage.min() == 0.0 and coverage.max() == 1.0


def _centroid(frame: torch.Tensor) -> torch.Tensor:
    """Circular (torus) centroid ``(x, y)`` in cells of an ``(8, 8)`` map."""
    angles = (torch.arange(8) + 0.5) * 2 * math.pi / 8
    x = torch.atan2((frame.sum(0) * angles.sin()).sum(), (frame.sum(0) * angles.cos()).sum())
    y = torch.atan2((frame.sum(1) * angles.sin()).sum(), (frame.sum(1) * angles.cos()).sum())
    return torch.stack([x, y]) * 8 / (2 * math.pi)


def test_a_tiny_run_prints_the_ceiling_then_one_probe_per_interval(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "2", "--every", "2", "--samples", "8", "--frames", "4",
         "--size", "4", "--threads", "1", "--set", "denoiser.channels=8", "--set", "evaluate.steps=2",
         "--save", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [line["step"] for line in lines] == [0, 2]
    assert set(lines[0]["training_clips"]) == {"class_accuracy", "fps_speed_spearman", "mean_speed_px",
                                               "persistence"}
    assert {"w=0", "w=3"} <= set(lines[1]) and lines[1]["w=3"]["std_ratio"] > 0
    assert set(lines[1]["x0_error"]) == {"t=200", "t=400", "t=600", "t=800", "t=950"}
    assert all(value > 0 for value in lines[1]["x0_error"].values())
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "step000002_w0.png", "step000002_w3.png", "training_clips.png"]

"""`vqvdm run` under torchrun: two processes on the CPU (gloo) run the training stages together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY = {
    "name": "ddp",
    "device": "cpu",
    "stages": ["tokenizer", "latents", "denoiser"],
    "data": {"train": {"name": "synthetic_motion", "num_clips": 8, "frames": 4, "size": 16,
                       "fps_values": [4.0, 8.0]}},
    "tokenizer": {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 4, "channels": 8,
                  "channel_mults": [1, 1, 1], "num_res_blocks": 1, "norm_groups": 4, "num_codes": 16,
                  "perceptual_weight": 0.0},
    "denoiser": {"name": "unet3d", "channels": 8, "channel_mults": [1], "num_res_blocks": 1,
                 "attention_head_dim": 8, "norm_groups": 4},
    "schedule": {"name": "ddpm", "num_train_steps": 50},
    "conditioners": [{"name": "fps"}, {"name": "class"}],
    "guidance": {"name": "cfg"},
    "train": {"tokenizer": {"steps": 2, "batch_size": 4, "val_clips": 0},
              "denoiser": {"steps": 2, "batch_size": 4, "val_clips": 0}},
    "latents": {"batch_size": 4},
}


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_torchrun_two_processes_run_the_training_stages(tmp_path):
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "vqvdm_core.cli", "run", str(recipe)],
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

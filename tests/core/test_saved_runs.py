"""A run directory and an exported pipeline saved by the code before Gaussian paths load, hash and
sample as they did (``tests/data/saved_vp_run``, README there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.run_dir import stage_hash
from vqvdm_core.system import LatentVideoDiffusion

SAVED = Path(__file__).parents[1] / "data" / "saved_vp_run"


def cpu_flags() -> list[str]:
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in line.split() if f.startswith(("avx", "amx")))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    shutil.copytree(SAVED / "run", root / "run")
    shutil.copytree(SAVED / "export", root / "export")
    return root


def test_a_saved_ddpm_run_keeps_its_stage_hashes(saved):
    reference = json.loads((SAVED / "reference.json").read_text())
    ctx = open_run(saved / "run")
    assert {s: stage_hash(ctx.recipe, s) for s in reference["hashes"]} == reference["hashes"]
    for stage, expected in reference["hashes"].items():
        assert json.loads((saved / "run" / stage / "stage.json").read_text())["hash"] == expected


def test_a_saved_ddpm_run_and_its_export_sample_as_before(saved):
    reference = json.loads((SAVED / "reference.json").read_text())
    expected = load_file(str(SAVED / "samples.safetensors"))
    ctx = open_run(saved / "run")
    same_cpu = cpu_flags() == reference["cpu_flags"] and torch.__version__ == reference["torch"]
    systems = {"run": ctx.system(trained=True), "export": LatentVideoDiffusion.from_pretrained(saved / "export")}
    for key, want in expected.items():
        name, sampler = key.split("/")
        got = systems[name].sample(2, labels=[0, 1], fps=[4.0, 8.0], steps=4,
                                   sampler=ctx.recipe.sample.sampler if sampler == "recipe" else sampler,
                                   generator=torch.Generator().manual_seed(7), decode=False)
        if same_cpu:
            assert torch.equal(got, want), key  # bit for bit where the reference was written
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=key)

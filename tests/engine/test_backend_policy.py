"""A recipe's ``runtime`` flags (TF32, cuDNN autotuning, deterministic kernels) hold while it runs."""

from __future__ import annotations

import json
import os

import pytest
import torch
from rich.console import Console
from standins import real_tiny_recipe

from vqvdm_core.errors import UserError
from vqvdm_core.pipeline import run_recipe
from vqvdm_core.pipeline.run_dir import stage_hash
from vqvdm_core.recipe import load_recipe
from vqvdm_core.runtime.backend_policy import backend_policy, current_policy

# The real tokenizer and U-Net at their smallest, the codebook filled from data with EMA updates.
_BASE = real_tiny_recipe(name="policy")
TINY = real_tiny_recipe(name="policy", tokenizer={
    **{k: v for k, v in _BASE["tokenizer"].items() if k != "num_codes"},
    "quantizer": {"name": "vq", "num_codes": 16, "ema": True, "init_from_data": True, "dead_code_threshold": 1.0}})


def _flags():
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_the_policy_sets_the_flags_and_restores_them(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _flags()
    with backend_policy(tf32=True, cudnn_benchmark=True):
        assert _flags()[:5] == (True, True, True, before[3], before[4])
    with backend_policy(tf32=False, cudnn_benchmark=True, deterministic=True):
        # deterministic wins over the autotuner, whose choice of algorithm may change between runs
        assert _flags() == (False, False, False, True, True, ":4096:8")
        assert current_policy()["deterministic"] and current_policy()["cublas_workspace_config"] == ":4096:8"
    assert _flags() == before


def test_a_users_cublas_workspace_is_kept(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with backend_policy(deterministic=True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_deterministic_run_trains_records_its_flags_and_keeps_the_stage_hashes(tmp_path):
    before = _flags()
    plain = load_recipe({**TINY, "output_dir": str(tmp_path)})
    strict = load_recipe({**TINY, "output_dir": str(tmp_path), "runtime": {"deterministic": True, "tf32": False}})
    for stage in TINY["stages"]:  # runtime flags decide kernels, not what a stage computes
        assert stage_hash(strict, stage) == stage_hash(plain, stage)
    seen = {}
    ctx = run_recipe(strict, console=Console(file=open(os.devnull, "w")))
    seen.update(json.loads((ctx.run.path / "environment.json").read_text())["backend_policy"])
    assert seen["deterministic"] and not seen["tf32_matmul"] and not seen["cudnn_benchmark"]
    assert json.loads((ctx.run.path / "denoiser" / "stage.json").read_text())["status"] == "done"
    assert _flags() == before  # the process gets its own settings back


def test_runtime_fields_are_checked_at_load_time():
    with pytest.raises(UserError, match=r"runtime\.tf32"):
        load_recipe({**TINY, "runtime": {"tf32": "often"}})
    with pytest.raises(UserError, match=r"runtime\.benchmark"):
        load_recipe({**TINY, "runtime": {"benchmark": True}})

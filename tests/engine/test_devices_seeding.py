"""Devices, autocast, seeding and the single-process behaviour of the distributed helpers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vqvdm_core.runtime import distributed
from vqvdm_core.runtime.devices import DeviceError, autocast, resolve_device, synchronize
from vqvdm_core.runtime.seeding import capture_rng_state, derive_seed, fork_rng, restore_rng_state, seed_everything


def _draw():
    return (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_resolve_device_names_what_is_missing(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="'cuda:1'.*CUDA is not available.*device: cpu"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="'mps'.*not available"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_autocast_precisions_on_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        autocast("cpu", "fp16")
    synchronize("cpu")  # a no-op that must not fail


def test_seed_everything_repeats_every_generator():
    seed_everything(3)
    first = _draw()
    seed_everything(3)
    assert _draw() == first
    seed_everything(4)
    assert _draw() != first


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path):
    seed_everything(11)
    _draw()
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = _draw()
    _draw()
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draw() == expected


def test_fork_rng_leaves_no_trace():
    seed_everything(2)
    with fork_rng():
        _draw()
    after = _draw()
    seed_everything(2)
    assert _draw() == after


def test_derive_seed_is_stable_and_spreads():
    assert derive_seed(1, "item", 0, 5) == derive_seed(1, "item", 0, 5)
    seeds = {derive_seed(1, "item", 0, p) for p in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)


def test_distributed_helpers_are_no_ops_for_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is False
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    distributed.barrier()
    t = torch.arange(3.0)
    assert distributed.all_reduce_mean(t) is t
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    distributed.cleanup()


def test_world_size_without_a_launcher_is_explained(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(Exception, match="torchrun --nproc_per_node"):
        distributed.init_from_env()


def test_available_memory_is_measured_and_check_fits_refuses_what_exceeds_it():
    import pytest

    from vqvdm_core.runtime.devices import MemoryBudgetError, available_memory, check_fits

    free = available_memory("cpu")
    assert free is not None and 0 < free < 1 << 50  # this test machine: Linux, /proc/meminfo
    check_fits(1000, what="a small thing", advice="-", available=2000)
    with pytest.raises(MemoryBudgetError, match=r"clips needs about 3.0 GB of memory; 2.0 GB is free on cpu\. Fewer"):
        check_fits(3e9, what="clips", advice="Fewer.", available=2 * 10**9)
    assert available_memory("meta") is None

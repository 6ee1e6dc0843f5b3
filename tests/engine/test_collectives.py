"""The process group as a CUDA cluster would run it, checked on the CPU (issue 28): the backend follows
the run's device, every collective goes through the helpers that move tensors where NCCL needs them,
and the other processes wait for rank 0's long solo work without the main group's timeout."""

from __future__ import annotations

import ast
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from vqvdm_core.errors import UserError
from vqvdm_core.runtime import distributed

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int, **env: str) -> None:
    os.environ.pop("VQVDM_DIST_BACKEND", None)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **env)
    torch.set_num_threads(1)


# -- the backend ----------------------------------------------------------------------------


def test_backend_follows_the_run_device_not_the_machine(monkeypatch):
    monkeypatch.delenv("VQVDM_DIST_BACKEND", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    assert distributed.backend_for("cpu") == "gloo"
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    monkeypatch.setenv("VQVDM_DIST_BACKEND", "gloo")
    assert distributed.backend_for("cuda:0") == "gloo"
    monkeypatch.setenv("VQVDM_DIST_BACKEND", "nccl")
    with pytest.raises(UserError, match="VQVDM_DIST_BACKEND=nccl needs a CUDA device; this run's device is cpu"):
        distributed.backend_for("cpu")


def test_a_cpu_run_on_a_gpu_machine_joins_over_gloo_and_leaves_the_gpus_alone(monkeypatch):
    """The old choice was NCCL whenever CUDA was present, and ``set_device(LOCAL_RANK)``."""
    joined: dict = {}
    monkeypatch.delenv("VQVDM_DIST_BACKEND", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda *a: pytest.fail("a CPU run selected a GPU"))
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(tdist, "init_process_group", lambda **kw: joined.update(kw))
    monkeypatch.setattr(tdist, "new_group", lambda **kw: joined.setdefault("wait_group", kw))
    monkeypatch.setenv("VQVDM_DIST_TIMEOUT_MINUTES", "7")
    for key, value in dict(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="x", MASTER_PORT="1").items():
        monkeypatch.setenv(key, value)
    try:
        assert distributed.init_from_env(device="cpu")
    finally:
        distributed._WAIT_GROUP = None
    assert joined["backend"] == "gloo" and joined["timeout"].total_seconds() == 7 * 60
    assert joined["wait_group"]["backend"] == "gloo"
    assert joined["wait_group"]["timeout"].total_seconds() == 168 * 3600


def test_nccl_collectives_run_on_this_process_gpu(monkeypatch):
    monkeypatch.setattr(tdist, "get_backend", lambda *a: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert distributed._comm_device(torch.zeros(2)) == torch.device("cuda", 3)
    monkeypatch.setattr(tdist, "get_backend", lambda *a: "gloo")
    assert distributed._comm_device(torch.zeros(2)) == torch.device("cpu")


# -- every collective through the helpers ---------------------------------------------------------


def _collective_callers() -> set[str]:
    """Module names of the code that calls each of ``torch.distributed``'s collectives from now on."""
    callers: set[str] = set()
    for name in ("all_reduce", "broadcast", "all_gather", "barrier", "reduce", "all_gather_object"):
        original = getattr(tdist, name)

        def wrapped(*args, _original=original, **kwargs):
            callers.add(sys._getframe(1).f_globals.get("__name__", "?"))
            return _original(*args, **kwargs)

        setattr(tdist, name, wrapped)
    return callers


def _quantizer_rank(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    from vqvdm_plugins.quantizers.vq import VectorQuantizer

    distributed.init_from_env(device="cpu")
    callers = _collective_callers()
    torch.manual_seed(0)  # the same module on both ranks; each its own batch
    quantizer = VectorQuantizer(num_codes=8, code_dim=4, ema=True, init_from_data=True, dead_code_threshold=1.0)
    quantizer.train()
    z = torch.randn(2, 4, 1, 3, 3, generator=torch.Generator().manual_seed(10 + rank))
    quantizer(z, update=True)  # a user's own loop: codebook filled on rank 0, sent to the rest
    with distributed.global_batch_share():  # the trainer's shared batch: counts and sums summed
        quantizer(z, update=True)
    torch.save({"callers": sorted(callers), "codebook": quantizer.codebook.clone()}, Path(out) / f"{rank}.pt")
    distributed.cleanup()


@pytest.mark.slow
def test_quantizer_collectives_go_through_the_helpers_that_move_tensors_for_nccl(tmp_path):
    mp.start_processes(_quantizer_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    results = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]
    for result in results:
        assert result["callers"] == ["vqvdm_core.runtime.distributed"]
    torch.testing.assert_close(results[0]["codebook"], results[1]["codebook"], rtol=0, atol=0)


def test_no_plugin_calls_torch_distributed_itself():
    """A component's collectives go through ``vqvdm_core.runtime.distributed`` (which puts tensors on
    the device the backend needs); ``torch.distributed`` imported in a plug-in is the bug of issue 28."""
    offenders = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch.distributed" or n.startswith("torch.distributed.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders


# -- waiting for rank 0 ----------------------------------------------------------------------------


def _waiting_rank(rank: int, world: int, port: int, out: str, wait: str) -> None:
    _join(rank, world, port, VQVDM_DIST_TIMEOUT_MINUTES="0.05")  # the main group: 3 s per collective
    distributed.init_from_env(device="cpu")
    outcome = "ok"
    start = time.perf_counter()
    try:
        if rank == 0:
            time.sleep(6.0)  # rank 0's solo stage, twice the main group's timeout
        if wait == "wait_for_main":
            distributed.wait_for_main()
            total = distributed.all_reduce_sum(torch.tensor([rank + 1.0]))  # the main group still works
            outcome = f"ok {total.item():g}"
        elif rank == 1:
            distributed.barrier()
    except RuntimeError as exc:
        outcome = f"error {type(exc).__name__}: {exc}"[:300]
    (Path(out) / f"{wait}{rank}.txt").write_text(f"{outcome}\n{time.perf_counter() - start:.1f}")
    if wait == "wait_for_main":
        distributed.cleanup()
    else:
        os._exit(0)  # the timed-out group cannot be left cleanly


@pytest.mark.slow
def test_the_other_processes_wait_for_rank_0_beyond_the_group_timeout(tmp_path):
    # the control: the main group's own barrier gives up after its 3 s ...
    mp.start_processes(_waiting_rank, args=(2, _free_port(), str(tmp_path), "barrier"), nprocs=2, join=True,
                       start_method="fork")
    outcome, seconds = (tmp_path / "barrier1.txt").read_text().splitlines()
    assert outcome.startswith("error") and float(seconds) < 5.5, outcome
    # ... while wait_for_main waits the 6 s rank 0 works, and the group goes on afterwards
    mp.start_processes(_waiting_rank, args=(2, _free_port(), str(tmp_path), "wait_for_main"), nprocs=2,
                       join=True, start_method="fork")
    for rank in range(2):
        outcome, seconds = (tmp_path / f"wait_for_main{rank}.txt").read_text().splitlines()
        assert outcome == "ok 3", outcome
    assert float((tmp_path / "wait_for_main1.txt").read_text().splitlines()[1]) >= 5.9

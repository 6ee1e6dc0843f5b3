"""Two processes (gloo on CPU) train to the same weights as one process on the same global batch.

The two ranks are forked from the test process with the environment ``torchrun`` would give them
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): the same code path
as ``torchrun --nproc_per_node 2 engine_train_script.py ...``, without importing torch twice more.
"""

from __future__ import annotations

import io
import json
import os
import socket
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_toys import ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine.checkpoint import load_checkpoint, load_weights

TRAIN = {"steps": 4, "batch_size": 4, "grad_accum": 2, "grad_clip": 0.5, "ema_decay": 0.8,
         "log_every": 1, "ckpt_every": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), VQVDM_DIST_BACKEND="gloo")
    torch.set_num_threads(1)
    from rich.console import Console

    from vqvdm_core import distributed

    shown = io.StringIO()
    with redirect_stdout(shown):
        trainer = make_trainer(make_gan(), settings(**TRAIN), Path(out), description="toy",
                               console=Console(file=shown))
        trainer.fit(ToyPairs(12))  # random augmentation on: it must not depend on the rank
        trainer.export_weights(Path(out) / "weights.safetensors")
    (Path(out) / f"console{rank}.txt").write_text(shown.getvalue())
    distributed.cleanup()


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    single = make_trainer(make_gan(), settings(**TRAIN), tmp_path / "one")
    single.fit(ToyPairs(12))
    single.export_weights(tmp_path / "one" / "weights.safetensors")

    out = tmp_path / "two"
    out.mkdir()
    mp.start_processes(_rank_main, args=(2, _free_port(), str(out)), nprocs=2, join=True,
                       start_method="fork")

    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 4 and state["rng"]["world_size"] == 2 and len(state["rng"]["ranks"]) == 2
    expected, got = single.model.state_dict(), state["model"]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0, msg=name)
    ema_one = load_weights(tmp_path / "one" / "weights.safetensors")
    ema_two = load_weights(out / "weights.safetensors")
    for name in ema_one:
        torch.testing.assert_close(ema_two[name], ema_one[name], atol=1e-6, rtol=0, msg=name)
    # the logged losses are the global means, as in one process
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(logged, single.history, strict=True):
        assert a["loss/generator"] == pytest.approx(b["loss/generator"], abs=1e-6)
    # only rank 0 shows progress
    assert "toy step 4/4" in (out / "console0.txt").read_text()
    assert (out / "console1.txt").read_text() == ""

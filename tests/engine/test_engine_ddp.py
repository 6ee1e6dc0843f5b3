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
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_toys import ToyGAN, ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine.checkpoint import load_checkpoint, load_weights

THREADS = torch.get_num_threads()
TRAIN = {"steps": 4, "batch_size": 4, "grad_accum": 2, "grad_clip": 0.5, "ema_decay": 0.8,
         "log_every": 1, "ckpt_every": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), VQVDM_DIST_BACKEND="gloo")
    torch.set_num_threads(1)


def _rank_main(rank: int, world: int, port: int, out: str, train: dict | None = None,
               model: dict | None = None) -> None:
    _join(rank, world, port)
    from rich.console import Console

    from vqvdm_core.runtime import distributed

    shown = io.StringIO()
    with redirect_stdout(shown), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(make_gan(**(model or {"noise": True})), settings(**(train or TRAIN)), Path(out),
                               description="toy", console=Console(file=shown))
        # random augmentation and model noise on: neither may depend on the rank
        trainer.fit(ToyPairs(12))
        trainer.export_weights(Path(out) / "weights.safetensors")
    (Path(out) / f"console{rank}.txt").write_text(shown.getvalue())
    (Path(out) / f"warnings{rank}.txt").write_text("\n".join(str(w.message) for w in caught))
    distributed.cleanup()


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    single = make_trainer(make_gan(noise=True), settings(**TRAIN), tmp_path / "one")
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
    assert (out / "warnings0.txt").read_text() == ""  # the random streams stayed together


@pytest.mark.slow
@pytest.mark.parametrize("shards", [2, 4])
def test_sharded_steps_are_bit_identical_on_one_or_two_processes(tmp_path, shards):
    """With shards, 2 processes (1 or 2 shards each) run the operations 1 process runs: the same bits,
    model noise, augmentation, accumulation, clipping and EMA included."""
    train = {**TRAIN, "shards": shards}
    single = make_trainer(make_gan(noise=True), settings(**train), tmp_path / "one")
    torch.set_num_threads(1)  # as each of the two processes: a kernel's reduction order follows its threads
    try:
        single.fit(ToyPairs(12))
    finally:
        torch.set_num_threads(THREADS)
    single.export_weights(tmp_path / "one" / "weights.safetensors")

    out = tmp_path / "two"
    out.mkdir()
    mp.start_processes(_rank_main, args=(2, _free_port(), str(out), train), nprocs=2, join=True,
                       start_method="fork")
    got = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    for name, value in single.model.state_dict().items():
        assert torch.equal(got[name], value), name
    ema_one, ema_two = (load_weights(d / "weights.safetensors") for d in (tmp_path / "one", out))
    for name in ema_one:
        assert torch.equal(ema_two[name], ema_one[name]), name
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(logged, single.history, strict=True):
        assert (a["loss/generator"], a["loss/discriminator"]) == (b["loss/generator"], b["loss/discriminator"])
        assert a["g_adv"] == pytest.approx(b["g_adv"], abs=1e-12)
    assert (out / "warnings0.txt").read_text() == ""


class _RankDependentDraws(ToyGAN):
    """Draws one extra number on rank 1: the processes' streams part (a component bug to report)."""

    def training_step(self, batch, *, step):
        from vqvdm_core.runtime import distributed

        if distributed.rank() == 1:
            torch.rand(1)
        return super().training_step(batch, step=step)


def _diverging_rank_main(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    from vqvdm_core.runtime import distributed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        trainer = make_trainer(_RankDependentDraws(), settings(steps=3, log_every=1), Path(out))
        trainer.fit(ToyPairs(12))
    (Path(out) / f"warnings{rank}.txt").write_text("\n".join(str(w.message) for w in caught))
    distributed.cleanup()


@pytest.mark.slow
def test_diverging_random_streams_are_reported_once(tmp_path):
    mp.start_processes(_diverging_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    for rank in (0, 1):
        shown = (tmp_path / f"warnings{rank}.txt").read_text()
        assert shown.count("random generators diverged by step 1") == 1, shown
        assert "draw_for_global_batch" in shown


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_exactly_on_one_process(tmp_path):
    train = {**TRAIN, "steps": 2}
    mp.start_processes(_rank_main, args=(2, _free_port(), str(tmp_path / "run"), train), nprocs=2, join=True,
                       start_method="fork")
    # ... and one process takes it from step 2 to step 4 (the LR schedule has no decay: same rates).
    resumed = make_trainer(make_gan(noise=True), settings(**TRAIN), tmp_path / "run")
    resumed.fit(ToyPairs(12))
    straight = make_trainer(make_gan(noise=True), settings(**TRAIN), tmp_path / "straight")
    straight.fit(ToyPairs(12))
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def _share_main(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    from vqvdm_core.runtime import distributed
    from vqvdm_plugins.vqgan3d.quantizer import VectorQuantizer

    distributed.init_from_env()
    flat = torch.arange(24.0).view(12, 2)[rank * 6:(rank + 1) * 6]  # this process's 6 of 12 rows
    quantizer = VectorQuantizer(num_codes=8, code_dim=2)
    torch.manual_seed(5)
    outside = (distributed.batch_share(), distributed.draw_for_global_batch(torch.randn, 3))
    torch.manual_seed(5)
    with distributed.global_batch_share():
        share = distributed.batch_share()
        drawn = distributed.draw_for_global_batch(torch.randn, 3)
        total = distributed.batch_sum(torch.tensor([float(rank + 1)]))
        torch.manual_seed(7)
        rows = quantizer._sample_rows(flat, 5)
    torch.save({"outside": outside, "share": share, "drawn": drawn, "total": total, "rows": rows},
               Path(out) / f"rank{rank}.pt")
    distributed.cleanup()


def test_global_batch_draws_give_each_process_its_rows_of_the_one_process_draw(tmp_path):
    from vqvdm_plugins.vqgan3d.quantizer import VectorQuantizer

    mp.start_processes(_share_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.manual_seed(5)
    whole = torch.randn(6)
    quantizer = VectorQuantizer(num_codes=8, code_dim=2)
    torch.manual_seed(7)
    rows = quantizer._sample_rows(torch.arange(24.0).view(12, 2), 5)
    for rank, g in enumerate(got):
        assert tuple(g["share"]) == (rank, 2)
        torch.testing.assert_close(g["drawn"], whole[rank * 3:(rank + 1) * 3], atol=0, rtol=0)
        assert float(g["total"]) == 3.0
        torch.testing.assert_close(g["rows"], rows, atol=0, rtol=0)  # the same global rows everywhere
        # outside a training step: a plain local draw, as for one process
        assert tuple(g["outside"][0]) == (0, 1)
        torch.testing.assert_close(g["outside"][1], whole[:3], atol=0, rtol=0)


def _quantizers_main(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    from vqvdm_plugins.quantizers.kl import KLPosterior
    from vqvdm_plugins.quantizers.lfq import LFQ

    from vqvdm_core.runtime import distributed

    distributed.init_from_env()
    z = _quantizer_inputs()[rank * 2:(rank + 1) * 2].clone().requires_grad_()  # this process's 2 of 4 clips
    with distributed.global_batch_share():
        lfq = LFQ(channels=4, temperature=0.5)
        loss = lfq(z).loss
        loss.backward()
        torch.manual_seed(3)
        latent = KLPosterior(channels=2).train()(_quantizer_inputs()[rank * 2:(rank + 1) * 2]).latent
    torch.save({"loss": loss.detach(), "grad": z.grad, "kl_latent": latent}, Path(out) / f"rank{rank}.pt")
    distributed.cleanup()


def _quantizer_inputs() -> torch.Tensor:
    return torch.randn(4, 4, 2, 3, 3, generator=torch.Generator().manual_seed(11))


def test_lfq_and_kl_train_the_same_on_one_or_two_processes(tmp_path):
    """LFQ's batch entropy is the global batch's (its gradient too, after the engine averages the
    processes' gradients); KL's posterior noise is drawn for the global batch."""
    from vqvdm_plugins.quantizers.kl import KLPosterior
    from vqvdm_plugins.quantizers.lfq import LFQ

    mp.start_processes(_quantizers_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    z = _quantizer_inputs().requires_grad_()
    loss = LFQ(channels=4, temperature=0.5)(z).loss
    loss.backward()
    torch.manual_seed(3)
    latent = KLPosterior(channels=2).train()(_quantizer_inputs()).latent
    # The engine averages the processes' losses and gradients: the mean of the two is the one process's.
    torch.testing.assert_close((got[0]["loss"] + got[1]["loss"]) / 2, loss.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat([g["grad"] for g in got]) / 2, z.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat([g["kl_latent"] for g in got]), latent, atol=0, rtol=0)

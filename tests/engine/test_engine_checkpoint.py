"""Checkpoints: atomic writes, safe loading, exact resume after SIGKILL, non-finite stops."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from engine_toys import ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine import NonFiniteLossError
from vqvdm_core.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)
from vqvdm_core.errors import MissingFileError, UserError



def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from vqvdm_core.io.atomic import WriteFailedError

    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}

    def torn_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(WriteFailedError) as failed:
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    message = str(failed.value)
    assert message.startswith(f"cannot write {path}: No space left on device (ENOSPC)")
    assert re.search(r"the disk holding .*ckpt has [\d.]+ [KMGT]?i?B free", message)
    assert "the previous last.pt is kept" in message and failed.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before  # no temporary left
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def _save_then_hang_mid_write(path: str, marker: str) -> None:
    """Child process: one complete save, then a second save that stops halfway and waits."""
    import io

    from vqvdm_core.engine import checkpoint

    save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    real_save = torch.save

    def slow_save(obj, handle):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        Path(marker).touch()
        time.sleep(60)
        handle.write(data[len(data) // 2:])

    checkpoint.torch.save = slow_save
    save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)


def test_a_process_killed_while_saving_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL in the middle of writing: the old checkpoint still loads; the torn temporary is cleaned."""
    path, marker = tmp_path / "last.pt", tmp_path / "writing"
    proc = _fork(_save_then_hang_mid_write, str(path), str(marker))
    try:
        _wait_for(marker, proc, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    finally:
        _reap(proc)
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert stale and stale[0].stat().st_size > 0, "the kill should have left a half-written temporary"
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(4.0))
    assert remove_stale_temporaries(tmp_path) == stale
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_checkpoints_are_loaded_without_running_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "vqvdm-checkpoint", "version": 1, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    with pytest.raises(MissingFileError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights(tmp_path):
    """Kill a run with SIGKILL after its first checkpoint; resuming ends where an uninterrupted run ends.

    The run has everything that consumes randomness or state: random augmentation in the data set,
    noise in the training step, Adam, warm-up, clipping, accumulation, EMA.
    """
    train = {"steps": 24, "batch_size": 4, "grad_accum": 2, "grad_clip": 0.5, "ema_decay": 0.9,
             "ckpt_every": 4, "log_every": 2, "optimizer": {"name": "adamw", "lr": 0.01, "warmup_steps": 3}}
    config = {"settings": train, "model": {"noise": True}, "n": 12}

    reference_dir = tmp_path / "uninterrupted"
    reference = make_trainer(make_gan(noise=True), settings(**train), reference_dir)
    reference.fit(ToyPairs(12))
    reference.export_weights(reference_dir / "weights.safetensors")

    run_dir = tmp_path / "killed"
    killed = dict(config, model={"noise": True, "sleep": 0.04})
    proc = _fork(_train_quietly, run_dir, killed)
    try:
        _wait_for(run_dir / "checkpoints" / "last.pt", proc, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    finally:
        _reap(proc)
    interrupted_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 0 < interrupted_at < train["steps"], "the kill must land mid-run"

    resumed_model = make_gan(noise=True)
    resumed = make_trainer(resumed_model, settings(**train), run_dir)
    result = resumed.fit(ToyPairs(12))
    assert result.step == train["steps"]
    assert resumed_model.calls == (train["steps"] - interrupted_at) * train["grad_accum"]

    expected = _params(reference.model)
    got = _params(resumed.model)
    initial = _params(make_gan())
    for name in expected:
        assert not torch.allclose(expected[name], initial[name])
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0, msg=name)
    resumed.export_weights(run_dir / "weights.safetensors")
    ema_expected = load_weights(reference_dir / "weights.safetensors")
    ema_got = load_weights(run_dir / "weights.safetensors")
    for name in ema_expected:
        torch.testing.assert_close(ema_got[name], ema_expected[name], atol=1e-6, rtol=0, msg=name)
    # metrics.jsonl: each logged step once, in order, across the kill.
    steps = [r["step"] for r in result.history if r["tag"] == "train"]
    assert steps == list(range(2, train["steps"] + 1, 2))


def test_fit_returns_at_once_when_the_stage_is_complete(tmp_path):
    first = make_trainer(make_gan(), settings(steps=3), tmp_path)
    done = first.fit(ToyPairs(8))
    model = make_gan(seed=7)  # different initial weights: they must come from the checkpoint
    again = make_trainer(model, settings(steps=3), tmp_path)
    result = again.fit(ToyPairs(8))
    assert model.calls == 0
    assert result.step == 3 and len(result.history) == len(done.history)
    for name, value in _params(first.model).items():
        assert torch.equal(_params(model)[name], value)


def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    make_trainer(make_gan(), settings(steps=2), tmp_path).fit(ToyPairs(8))

    other = make_gan()
    other.generator = torch.nn.Linear(4, 4, bias=False)
    with pytest.raises(CheckpointError, match="does not fit this model.*generator.bias.*Delete"):
        make_trainer(other, settings(steps=4), tmp_path).fit(ToyPairs(8))


def test_non_finite_loss_stops_with_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    model = make_gan(nan_at_step=6, nan_group="discriminator")
    trainer = make_trainer(model, settings(steps=10, ckpt_every=5), tmp_path)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(ToyPairs(8))
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "step 6" in message and "losses['discriminator'] = nan" in message
    assert "d_total=nan" in message and "step 5" in message
    assert info.value.group == "discriminator" and info.value.step == 6
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """A NaN gradient (finite loss) poisons the weights: no checkpoint is written with them."""
    model = make_gan()
    trainer = make_trainer(model, settings(steps=6, ckpt_every=1), tmp_path)
    original = model.training_step

    def poisoned(batch, *, step):
        out = original(batch, step=step)
        if step == 3:  # d sqrt(x)/dx at 0 is inf, times 0: a NaN gradient, a finite loss
            w = model.generator.weight
            out.losses["generator"] = out.losses["generator"] + torch.sqrt(w * 0.0).sum()
        return out

    model.training_step = poisoned
    trainer._step_fn = poisoned
    with pytest.raises(NonFiniteLossError, match="weights are not finite after step 4"):
        trainer.fit(ToyPairs(8))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_gradient_is_caught_before_the_step_when_clipping(tmp_path):
    model = make_gan()
    trainer = make_trainer(model, settings(steps=3, grad_clip=1.0), tmp_path)
    original = model.training_step

    def poisoned(batch, *, step):
        out = original(batch, step=step)
        w = model.generator.weight
        out.losses["generator"] = out.losses["generator"] + torch.sqrt(w * 0.0).sum()
        return out

    trainer._step_fn = poisoned
    before = _params(model)
    with pytest.raises(NonFiniteLossError, match="gradient of losses\\['generator'\\] at step 0 is not finite"):
        trainer.fit(ToyPairs(8))
    assert all(torch.equal(v, before[k]) for k, v in _params(model).items())


def test_deferred_checks_name_the_bad_step_and_keep_the_last_good_checkpoint(tmp_path):
    """``check_finite: log`` (a GPU's default): the losses stay on the device until the next log
    step, checkpoint or validation, which finds the first bad step and never saves after it."""
    model = make_gan(nan_at_step=6, nan_group="discriminator")
    trainer = make_trainer(model, settings(steps=12, ckpt_every=5, log_every=4, check_finite="log"), tmp_path)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(ToyPairs(8))
    assert info.value.step == 6 and info.value.group == "discriminator"
    assert "losses['discriminator'] = nan" in str(info.value) and "step 5" in str(info.value)
    assert model.calls == 8  # found at the log step after step 8, before step 10's checkpoint
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 5
    records = [r["step"] for r in trainer.history if r["tag"] == "train"]
    assert records == [4]  # the window holding the NaN is never written as a record


def test_deferred_gradient_check_names_the_step_that_made_it(tmp_path):
    model = make_gan()
    trainer = make_trainer(model, settings(steps=3, grad_clip=1.0, log_every=2, check_finite="log"), tmp_path)
    original = model.training_step

    def poisoned(batch, *, step):
        out = original(batch, step=step)
        if step == 1:
            w = model.generator.weight
            out.losses["generator"] = out.losses["generator"] + torch.sqrt(w * 0.0).sum()
        return out

    trainer._step_fn = poisoned
    with pytest.raises(NonFiniteLossError, match="gradient of losses\\['generator'\\] at step 1 is not finite"):
        trainer.fit(ToyPairs(8))


def test_deferred_checks_log_the_same_records_as_step_checks(tmp_path):
    runs = {}
    for mode in ("step", "log"):
        trainer = make_trainer(make_gan(noise=True), settings(steps=6, log_every=3, grad_clip=1.0, grad_accum=2,
                                                              check_finite=mode), tmp_path / mode)
        runs[mode] = [{k: v for k, v in r.items() if k not in ("time", "it_per_s")}
                      for r in trainer.fit(ToyPairs(8)).history]
    assert runs["log"] == runs["step"]  # float64 sums on the device, as on the host: the same numbers


def test_exported_weights_round_trip(tmp_path):
    trainer = make_trainer(make_gan(), settings(steps=2, ema_decay=0.5), tmp_path)
    trainer.fit(ToyPairs(8))
    trainer.export_weights(tmp_path / "ema.safetensors")
    trainer.export_weights(tmp_path / "raw.safetensors", ema=False)
    ema, raw = load_weights(tmp_path / "ema.safetensors"), load_weights(tmp_path / "raw.safetensors")
    for name, value in _params(trainer.ema_model()).items():
        assert torch.equal(ema[name], value)
    for name, value in _params(trainer.model).items():
        assert torch.equal(raw[name], value)
    with pytest.raises(MissingFileError, match="weights not found"):
        load_weights(tmp_path / "missing.safetensors")


def _train_quietly(run_dir: Path, config: dict) -> None:
    """Child process: train as ``engine_train_script.py RUN_DIR CONFIG`` would, printing nothing."""
    import contextlib
    import io

    from engine_train_script import train

    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):
        train(run_dir, config)


def _fork(target, *args) -> mp.process.BaseProcess:
    """Start ``target(*args)`` in a forked child (no second torch import: seconds saved per test)."""
    proc = mp.get_context("fork").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _reap(proc: mp.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=30)


def _wait_for(path: Path, proc: mp.process.BaseProcess, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not proc.is_alive():
            raise AssertionError(f"the child process ended (code {proc.exitcode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.005)

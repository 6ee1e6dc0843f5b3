"""Checkpoints and weights damaged after they were written, and writes that fail: a SHA-256 beside
each file is checked before it is trusted, non-finite tensors are refused on resume, and a failed
write (a full disk) is one message that keeps the last good file."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from engine_toys import ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint
from vqvdm_core.errors import UserError
from vqvdm_core.io import atomic
from vqvdm_core.io.atomic import WriteFailedError
from vqvdm_core.io.checksum import ChecksumError, digest_path, file_sha256, verify_file


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def damage_in_place(path: Path) -> None:
    """Flip the bits of 16 bytes in the middle of ``path``: same size, same name, other content."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_checkpoint_and_weight_file_gets_a_sha256sum_record(tmp_path: Path) -> None:
    trainer = make_trainer(make_gan(), settings(steps=2, ckpt_every=1), tmp_path)
    trainer.fit(ToyPairs(8))
    weights = trainer.export_weights(tmp_path / "weights.safetensors")
    for path in (tmp_path / "checkpoints" / "last.pt", weights):
        assert digest_path(path).read_text() == f"{file_sha256(path)}  {path.name}\n"
        assert verify_file(path, what="the file", advice="")
        if shutil.which("sha256sum"):  # the record is sha256sum's own format
            subprocess.run(["sha256sum", "--check", "--quiet", digest_path(path).name], cwd=path.parent, check=True)


def test_a_checkpoint_damaged_in_place_is_refused_before_the_resume_trusts_it(tmp_path: Path) -> None:
    make_trainer(make_gan(), settings(steps=4, ckpt_every=2), tmp_path).fit(ToyPairs(8))
    last = tmp_path / "checkpoints" / "last.pt"
    size = last.stat().st_size
    damage_in_place(last)
    assert last.stat().st_size == size
    before = files(last.parent)
    model = make_gan(seed=3)
    with pytest.raises(ChecksumError) as refused:
        make_trainer(model, settings(steps=8, ckpt_every=2), tmp_path).fit(ToyPairs(8))
    message = str(refused.value)
    assert f"the checkpoint {last} does not match the SHA-256 recorded when it was written" in message
    assert f"Delete {last.parent}" in message and refused.value.exit_code == 2
    assert model.calls == 0  # nothing trained on it
    assert files(last.parent) == before  # and nothing replaced it


def test_weights_damaged_in_place_are_refused_and_a_file_without_a_record_is_read_as_before(tmp_path: Path) -> None:
    trainer = make_trainer(make_gan(), settings(steps=2), tmp_path)
    trainer.fit(ToyPairs(8))
    path = trainer.export_weights(tmp_path / "weights.safetensors")
    good = load_weights(path)
    damage_in_place(path)
    with pytest.raises(ChecksumError, match=r"the weights .*weights\.safetensors does not match .* delete "
                                            r"weights\.safetensors\.sha256"):
        load_weights(path)
    # A file written by an older vqvdm has no record: read unchecked, as it always was.
    trainer.export_weights(path)
    digest_path(path).unlink()
    assert not verify_file(path, what="the weights", advice="")
    assert all(torch.equal(good[k], v) for k, v in load_weights(path).items())


def test_a_damaged_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(2)}, path)
    digest_path(path).write_text("not a digest\n")
    with pytest.raises(ChecksumError, match=r"last\.pt\.sha256 is not a sha256sum record of last\.pt"):
        load_checkpoint(path)


def test_non_finite_tensors_in_a_checkpoint_are_refused_on_resume_naming_the_file(tmp_path: Path) -> None:
    """A checkpoint that matches its record but holds NaN (written by a version that did not check):
    the resume would train on NaN weights and replace the good exported ones."""
    make_trainer(make_gan(), settings(steps=2, ckpt_every=1), tmp_path).fit(ToyPairs(8))
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    first = next(iter(state["optimizers"]))
    moments = state["optimizers"][first]["state"][0]
    moments["exp_avg_sq"] = torch.full_like(moments["exp_avg_sq"], float("nan"))
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, last)
    before = files(last.parent)
    model = make_gan(seed=3)
    with pytest.raises(UserError) as refused:
        make_trainer(model, settings(steps=4, ckpt_every=1), tmp_path).fit(ToyPairs(8))
    message = str(refused.value)
    assert message.startswith(f"{last} holds non-finite values (nan/inf) in 1 of ")
    assert f"optimizers.{first}.state.0.exp_avg_sq" in message and f"delete {last.parent}" in message
    assert model.calls == 0 and files(last.parent) == before


def test_a_crash_between_recording_the_digest_and_replacing_the_file_leaves_both_readable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(2)}, path)
    real_replace = atomic.os.replace

    def crash_before_the_checkpoint_moves(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt  # the process stops here: new digest recorded, old file in place
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", crash_before_the_checkpoint_moves)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "w": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert len(digest_path(path).read_text().splitlines()) == 2  # the new file's line and the old one's
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint({"step": 3, "w": torch.zeros(2)}, path)
    assert len(digest_path(path).read_text().splitlines()) == 1 and load_checkpoint(path)["step"] == 3


def test_a_full_disk_during_training_is_one_message_and_the_resume_is_exact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = dict(steps=6, ckpt_every=2, optimizer={"name": "adamw", "lr": 0.01, "warmup_steps": 2})
    reference = make_trainer(make_gan(), settings(**train), tmp_path / "reference")
    reference.fit(ToyPairs(8))

    run = tmp_path / "full"
    real_save = torch.save
    saves = []

    def disk_fills_at_the_second_checkpoint(obj, handle, *args, **kwargs):
        saves.append(obj["step"])
        if len(saves) == 2:
            handle.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_the_second_checkpoint)
    with pytest.raises(WriteFailedError) as failed:
        make_trainer(make_gan(), settings(**train), run).fit(ToyPairs(8))
    monkeypatch.undo()
    last = run / "checkpoints" / "last.pt"
    message = str(failed.value)
    assert message.startswith(f"cannot write {last}: No space left on device (ENOSPC)")
    assert "free" in message and "the file needs" in message and "the previous last.pt is kept" in message
    assert sorted(files(last.parent)) == ["last.pt", "last.pt.sha256"]  # no temporary left
    assert load_checkpoint(last)["step"] == 2

    resumed = make_trainer(make_gan(seed=5), settings(**train), run)
    assert resumed.fit(ToyPairs(8)).step == 6
    for name, value in params(reference.model).items():
        torch.testing.assert_close(params(resumed.model)[name], value, atol=1e-6, rtol=0, msg=name)

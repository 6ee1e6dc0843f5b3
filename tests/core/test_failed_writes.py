"""Writes that fail (a full disk, simulated by an ENOSPC from the writer) through the CLI: one message
naming the file and the free space, no traceback, the last good file kept, and a run that resumes
exactly once there is room again."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
import yaml
from standins import tiny_recipe
from typer.testing import CliRunner

from vqvdm_core.cli import app
from vqvdm_core.engine.checkpoint import load_checkpoint, load_weights

runner = CliRunner()


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def stopped_by_a_full_disk_at_the_second_checkpoint(recipe: Path, monkeypatch: pytest.MonkeyPatch):
    """``vqvdm run RECIPE --stage tokenizer`` whose second checkpoint write meets a full disk."""
    real_save = torch.save
    calls = []

    def fills_at_the_second_checkpoint(obj, handle, *args, **kwargs):
        calls.append(obj)
        if len(calls) == 2:
            handle.write(b"\0" * 1024)
            no_space()
        real_save(obj, handle, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", fills_at_the_second_checkpoint)
        return runner.invoke(app, ["run", str(recipe), "--stage", "tokenizer"])


def test_a_full_disk_while_checkpointing_stops_the_run_with_one_message_and_the_next_run_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standins) -> None:
    runs = tmp_path / "runs"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(output_dir=str(runs)))
    reference = write_recipe(tmp_path / "ref.yaml", tiny_recipe(name="ref", output_dir=str(runs)))
    assert runner.invoke(app, ["run", str(reference), "--stage", "tokenizer"]).exit_code == 0

    result = stopped_by_a_full_disk_at_the_second_checkpoint(recipe, monkeypatch)
    last = runs / "tiny" / "tokenizer" / "checkpoints" / "last.pt"
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"error: cannot write {last}: No space left on device (ENOSPC)" in text
    assert "free" in text and "the previous last.pt is kept" in text and "Traceback" not in text
    assert load_checkpoint(last)["step"] == 2
    assert not (runs / "tiny" / "tokenizer" / "tokenizer.safetensors").exists()

    result = runner.invoke(app, ["run", str(recipe), "--stage", "tokenizer"])  # room again
    assert result.exit_code == 0, result.output
    got = load_weights(runs / "tiny" / "tokenizer" / "tokenizer.safetensors")
    want = load_weights(runs / "ref" / "tokenizer" / "tokenizer.safetensors")
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)


def test_a_full_disk_while_writing_samples_keeps_the_previous_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standins) -> None:
    import vqvdm_core.io.video as video

    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(output_dir=str(tmp_path / "runs")))
    assert runner.invoke(app, ["run", str(recipe), "--stage", "tokenizer", "--stage", "latents",
                               "--stage", "denoiser"]).exit_code == 0
    run = tmp_path / "runs" / "tiny"
    out = tmp_path / "out" / "grid.mp4"
    args = ["sample", str(run), "--num", "2", "--steps", "2", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}

    real_encode = video._encode

    def encode_then_fill(frames, path, *a, **k):
        real_encode(frames[:1], path, *a, **k)  # part of the file is out when the disk fills
        no_space()

    monkeypatch.setattr(video, "_encode", encode_then_fill)
    result = runner.invoke(app, args + ["--seed", "9"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"error: cannot write {out}: No space left on device (ENOSPC)" in text and "Traceback" not in text
    assert "the previous grid.mp4 is kept" in text
    after = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert sorted(after) == sorted(before)  # no temporary left
    assert after["grid.mp4"] == before["grid.mp4"] and after["grid.safetensors"] == before["grid.safetensors"]
    # Each file is whole, old or new: the GIF went out before the disk filled, and the output says so.
    assert after["grid.gif"] != before["grid.gif"] and f"wrote {out.with_suffix('.gif')}" in text


def test_a_run_whose_checkpoint_was_damaged_in_place_is_refused_before_it_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standins) -> None:
    runs = tmp_path / "runs"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(output_dir=str(runs)))
    assert stopped_by_a_full_disk_at_the_second_checkpoint(recipe, monkeypatch).exit_code == 1
    last = runs / "tiny" / "tokenizer" / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit pattern flipped in place: same size, same name
    last.write_bytes(bytes(data))
    before = {p: p.read_bytes() for p in sorted((runs / "tiny" / "tokenizer").rglob("*")) if p.is_file()}
    result = runner.invoke(app, ["run", str(recipe), "--stage", "tokenizer"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"error: the checkpoint {last} does not match the SHA-256 recorded when it was written" in text
    assert "Traceback" not in text
    after = {p: p.read_bytes() for p in sorted((runs / "tiny" / "tokenizer").rglob("*")) if p.is_file()
             if p.name != "stage.json"}
    assert after == {p: v for p, v in before.items() if p.name != "stage.json"}  # no weights written
    assert not (runs / "tiny" / "tokenizer" / "tokenizer.safetensors").exists()

"""A samples file given to `vqvdm evaluate` whose clips cannot be scored (no clips, no frames, labels
that are not class indices, a NaN or infinite FPS or condition value) is refused with one message
naming the file and what is wrong, exit code 2, no traceback, before any metric is built, and an
existing ``--out`` report is left as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from standins import tiny_recipe
from typer.testing import CliRunner

from vqvdm_core import load_recipe
from vqvdm_core.cli import app
from vqvdm_core.pipeline import run_recipe

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, module_standins):
    """One whole tiny run (every stage), shared read-only by this module."""
    root = tmp_path_factory.mktemp("evaluate-inputs") / "runs"
    ctx = run_recipe(load_recipe(tiny_recipe(output_dir=str(root), sample={"steps": 2, "fps": [8.0, 12.0],
                                                                         "batch_size": 4})),
                     console=Console(file=open("/dev/null", "w")))
    return ctx.run.path


@pytest.fixture
def run_copy(tiny_run, tmp_path, standins):
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))


@pytest.fixture
def no_metrics(monkeypatch):
    """Building a metric fails the test: a refusal must come before any metric work."""
    from vqvdm_core.pipeline.stages import evaluate as evaluate_stage

    def never(ctx):
        raise AssertionError("metrics were built")

    monkeypatch.setattr(evaluate_stage, "build_metrics", never)


def _samples(run: Path) -> dict[str, torch.Tensor]:
    data = load_file(str(run / "sample" / "samples.safetensors"))
    assert data["video"].shape[0] >= 2  # the tests below change clip index 1
    return data


def _with(data: dict[str, torch.Tensor], field: str, index: int, value: float) -> dict[str, torch.Tensor]:
    values = data.get(field, torch.zeros(len(data["fps"]))).clone().float()
    values[index] = value
    return {**data, field: values}


def _bad_files() -> dict[str, tuple]:
    """name -> (what to do to the run's samples, the message expected: {file} is the bad file)."""
    return {
        "no-clips": (lambda d: {k: v[:0].contiguous() for k, v in d.items()}, "{file} holds 0 clips: there is nothing to score"),
        "no-frames": (lambda d: {**d, "video": d["video"][:, :, :0].contiguous()},
                      "the clips of {file} have 0 frames (video {shape}): there is nothing to score"),
        "no-pixels": (lambda d: {**d, "video": d["video"][:, :, :, :, :0].contiguous()},
                      "the clips of {file} have frames of 8x0 pixels (video {shape})"),
        "fps-nan": (lambda d: _with(d, "fps", 1, NAN), "{file}: the fps of clip index 1 is nan (not finite); every condition value must be a finite number"),
        "fps-inf": (lambda d: _with(d, "fps", 1, INF), "{file}: the fps of clip index 1 is inf (not finite)"),
        "fps-minus-inf": (lambda d: _with(d, "fps", 1, -INF), "{file}: the fps of clip index 1 is -inf (not finite)"),
        "motion-nan": (lambda d: _with(d, "motion", 1, NAN), "{file}: the motion of clip index 1 is nan (not finite)"),
        "label-float": (lambda d: {**d, "label": d["label"].float()},
                        "{file}: label holds float32 values; labels are class indices (integers, -1 for none)"),
        "label-negative": (lambda d: {**d, "label": torch.full_like(d["label"], -7)},
                           "{file}: the label of clip index 0 is -7, not a class index (0 or more, -1 for none) (4 clips' label in all)"),
    }


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


@pytest.mark.parametrize("name", list(_bad_files()))
def test_evaluate_refuses_samples_it_cannot_score_naming_the_file_and_the_problem(run_copy, no_metrics, name):
    change, expected = _bad_files()[name]
    data = _samples(run_copy)
    bad = run_copy / "sample" / f"{name}.safetensors"
    save_file(change(data), str(bad))
    out = run_copy / "sample" / "bad.metrics.json"
    out.write_text('{"earlier": "report"}')
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    result, text = _invoke("evaluate", bad, "--out", out)
    assert result.exit_code == 2, text
    assert "Traceback" not in text and (result.exception is None or isinstance(result.exception, SystemExit))
    assert expected.format(file=bad, shape=tuple(change(data)["video"].shape)) in text, text
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before  # --out too
    assert not bad.with_name(f"{bad.stem}.metrics.json").exists()


def test_evaluate_refuses_before_writing_the_default_report(run_copy, no_metrics):
    bad = run_copy / "sample" / "nan.safetensors"
    save_file(_with(_samples(run_copy), "fps", 0, NAN), str(bad))
    result, text = _invoke("evaluate", bad)
    assert result.exit_code == 2 and "the fps of clip index 0 is nan" in text
    assert not (run_copy / "sample" / "nan.metrics.json").exists()


def test_several_bad_values_are_counted_in_the_message(run_copy, no_metrics):
    data = _samples(run_copy)
    bad = run_copy / "sample" / "nans.safetensors"
    save_file({**data, "fps": torch.full_like(data["fps"], NAN)}, str(bad))
    result, text = _invoke("evaluate", bad)
    assert result.exit_code == 2
    assert f"the fps of clip index 0 is nan (not finite) ({len(data['fps'])} clips' fps in all)" in text


def test_unlabelled_clips_and_finite_conditions_are_scored(run_copy):
    data = _samples(run_copy)
    good = run_copy / "sample" / "unlabelled.safetensors"
    save_file({**data, "label": torch.full_like(data["label"], -1),
               "motion": torch.linspace(0, 1, len(data["fps"]))}, str(good))
    result, text = _invoke("evaluate", good, "--metrics", "mean_brightness")
    assert result.exit_code == 0, text
    assert "mean_brightness" in good.with_name("unlabelled.metrics.json").read_text()

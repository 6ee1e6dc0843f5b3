"""Bad inputs to the commands that read a trained run (sample, evaluate, export, report, run): each is
one message naming the file and what is wrong, exit code 2, no traceback, and the files that were
there before are left as they were."""

from __future__ import annotations

import hashlib
import json
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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, module_standins):
    """One whole tiny run (every stage), shared read-only by this module (as in test_pipeline.py)."""
    root = tmp_path_factory.mktemp("refusals") / "runs"
    ctx = run_recipe(load_recipe(tiny_recipe(output_dir=str(root))), console=Console(file=open("/dev/null", "w")))
    return ctx.run.path


@pytest.fixture
def run_copy(tiny_run, tmp_path, standins):
    """A private copy of the shared run (for tests that damage it or write into it)."""
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))


def _invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``, but the names in ``skip``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if p.name not in skip}


def _refused(result, text: str, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.fixture
def no_sampling(monkeypatch):
    """Sampling fails the test: a refusal must come before it."""
    import vqvdm_core.pipeline.generate as generate_module

    def never(*args, **kwargs):
        raise AssertionError("sampling started")
        yield  # a generator, as the real one

    monkeypatch.setattr(generate_module, "generate", never)


# -- 1: every file `vqvdm sample` writes is checked before sampling -----------------------------------


@pytest.mark.parametrize("sibling", ["x.gif", "x.safetensors"])
def test_sample_refuses_a_file_it_writes_beside_out_that_is_a_directory(run_copy, tmp_path, no_sampling, sibling):
    od = tmp_path / "od"
    (od / sibling).mkdir(parents=True)
    (od / sibling / "kept.txt").write_text("mine")
    (od / "x.tmp").write_text("a file of mine")
    before = snapshot(od)
    result, text = _invoke("sample", run_copy, "--steps", "2", "--out", od / "x.mp4")
    _refused(result, text, f"--out {od / 'x.mp4'} also writes {od / sibling}, which is a directory")
    assert snapshot(od) == before


def test_sample_refuses_an_out_that_is_not_a_video_type_before_sampling(run_copy, tmp_path, no_sampling):
    result, text = _invoke("sample", run_copy, "--out", tmp_path / "x.avi")
    _refused(result, text, f"--out {tmp_path / 'x.avi'}: the grid video must end in one of .mp4, .mkv, .gif")
    assert list(tmp_path.iterdir()) == [run_copy]


@pytest.mark.parametrize("inside", ["sample/samples.mp4", "sample/grid.mp4", "denoiser/x.gif"])
def test_sample_never_writes_into_a_stage_folder_of_the_run(run_copy, no_sampling, inside):
    before = snapshot(run_copy)
    result, text = _invoke("sample", run_copy, "--steps", "2", "--out", run_copy / inside)
    stage = inside.split("/")[0]
    _refused(result, text, f"into the run's '{stage}' stage folder, whose files only `vqvdm run` writes",
             "choose a path outside it")
    assert snapshot(run_copy) == before


def test_sample_never_writes_into_the_exported_pipeline_folder(run_copy, tmp_path):
    folder = tmp_path / "exported"
    assert _invoke("export", run_copy, folder)[0].exit_code == 0
    before = snapshot(folder)
    result, text = _invoke("sample", folder, "--steps", "2", "--out", folder / "denoiser" / "weights.mp4")
    _refused(result, text, "into the exported pipeline folder, whose files are checksummed")
    assert snapshot(folder) == before


def test_a_samples_file_that_cannot_be_written_leaves_no_temporary_behind(tmp_path):
    from vqvdm_core.pipeline.samples_file import save_samples

    target = tmp_path / "x.safetensors"
    target.mkdir()
    (tmp_path / "x.tmp").write_text("a file of mine")
    before = snapshot(tmp_path)
    with pytest.raises(OSError):
        save_samples(target, torch.zeros(1, 3, 2, 4, 4), [0], [8.0])
    assert snapshot(tmp_path) == before


# -- 2: a report.html that is a directory ---------------------------------------------------------------


def test_report_refuses_a_report_path_that_is_a_directory(run_copy):
    (run_copy / "report.html").unlink()
    (run_copy / "report.html").mkdir()
    (run_copy / "report.html" / "kept.txt").write_text("mine")
    before = snapshot(run_copy)
    result, text = _invoke("report", run_copy)
    _refused(result, text, f"cannot write the report {run_copy / 'report.html'}: it is a directory")
    assert snapshot(run_copy) == before


def test_report_refuses_a_report_files_path_that_is_a_file(run_copy):
    shutil.rmtree(run_copy / "report_files")
    (run_copy / "report_files").write_text("mine")
    before = snapshot(run_copy)
    result, text = _invoke("report", run_copy)
    _refused(result, text, f"cannot write the report's pictures to {run_copy / 'report_files'}: it is not a folder")
    assert snapshot(run_copy) == before


def test_run_warns_when_its_report_cannot_be_written_and_keeps_its_stages_done(run_copy):
    (run_copy / "report.html").unlink()
    (run_copy / "report.html").mkdir()
    records = {p: p.read_bytes() for p in run_copy.glob("*/stage.json")}
    result, text = _invoke("run", run_copy / "recipe.yaml", "--set", f"output_dir={run_copy.parent}")
    assert result.exit_code == 0, result.output
    assert f"warning: no report written: cannot write the report {run_copy / 'report.html'}: it is a directory" in text
    assert "Traceback" not in text and "[evaluate] up to date, skipped" in text
    assert {p: p.read_bytes() for p in run_copy.glob("*/stage.json")} == records  # nothing marked failed
    assert "WARNING no report written" in (run_copy / "run.log").read_text()
    assert (run_copy / "report.html").is_dir()


# -- 3: weights and latent scales that are not finite ---------------------------------------------------


def _poison(path: Path, count: int) -> None:
    """Put a NaN / inf in the first ``count`` floating-point tensors of a weights file."""
    state = load_file(str(path))
    for i, name in enumerate(sorted(k for k, v in state.items() if v.is_floating_point())[:count]):
        state[name].view(-1)[0] = float("nan") if i % 2 == 0 else float("inf")
    save_file(state, str(path))
    _record_digest(path)


def _record_digest(path: Path) -> None:
    """Record ``path``'s new SHA-256, as a vqvdm that wrote these bytes would have: the refusal tested
    is then the one for what the file holds, not the one for a file changed after it was written."""
    from vqvdm_core.io.checksum import digest_path, file_sha256

    digest_path(path).write_text(f"{file_sha256(path)}  {path.name}\n")


@pytest.mark.parametrize("command", ["sample", "evaluate", "export"])
@pytest.mark.parametrize("stage, weights, count", [("denoiser", "denoiser.safetensors", 3),
                                                   ("tokenizer", "tokenizer.safetensors", 1)])
def test_non_finite_weights_are_refused_naming_the_file(run_copy, tmp_path, command, stage, weights, count):
    target = run_copy / stage / weights
    _poison(target, count)
    total = len(load_file(str(target)))
    before = snapshot(run_copy)
    out = {"sample": ["--steps", "2", "--out", tmp_path / "s.mp4"], "evaluate": ["--steps", "2"],
           "export": [tmp_path / "exported"]}[command]
    result, text = _invoke(command, run_copy, *out)
    _refused(result, text, f"{target} holds non-finite values (nan/inf) in {count} of {total} tensors, e.g. ",
             "the training diverged; retrain the stage")
    assert snapshot(run_copy) == before
    assert not (tmp_path / "s.mp4").exists() and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("scale", ["nan", "inf", -1.0, None])
@pytest.mark.parametrize("command", ["sample", "export"])
def test_a_non_finite_latent_scale_in_the_run_is_refused(run_copy, tmp_path, scale, command):
    record_path = run_copy / "latents" / "stage.json"
    record = json.loads(record_path.read_text())
    record["info"]["scale"] = scale
    record_path.write_text(json.dumps(record))
    before = snapshot(run_copy)
    out = ["--steps", "2", "--out", tmp_path / "s.mp4"] if command == "sample" else [tmp_path / "exported"]
    result, text = _invoke(command, run_copy, *out)
    _refused(result, text, f"{record_path} records the latent scale {scale!r}, not a positive finite number")
    assert snapshot(run_copy) == before
    assert not (tmp_path / "s.mp4").exists() and not (tmp_path / "exported").exists()


def test_an_exported_pipeline_with_non_finite_weights_is_refused(run_copy, tmp_path):
    folder = tmp_path / "exported"
    assert _invoke("export", run_copy, folder)[0].exit_code == 0
    weights = folder / "denoiser" / "weights.safetensors"
    _poison(weights, 2)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    data = weights.read_bytes()  # an index that agrees with the damaged file: only its values are wrong
    index["files"]["denoiser/weights.safetensors"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    index_path.write_text(json.dumps(index))
    before = snapshot(folder)
    result, text = _invoke("sample", folder, "--steps", "2", "--out", tmp_path / "s.mp4")
    _refused(result, text, f"{weights} holds non-finite values (nan/inf) in 2 of ")
    assert snapshot(folder) == before and not (tmp_path / "s.mp4").exists()


# -- 4, 5, 8: what `vqvdm evaluate` is given and where it writes ----------------------------------------


def test_evaluate_refuses_a_target_that_does_not_exist(run_copy):
    missing = run_copy / "sample" / "nope.safetensors"
    before = snapshot(run_copy)
    result, text = _invoke("evaluate", missing, "--steps", "2")
    _refused(result, text, f"{missing} does not exist")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("target, out", [
    (".", "evaluate/metrics.json"),
    (".", "sample/../evaluate/metrics.json"),
    ("sample/samples.safetensors", "evaluate/metrics.json"),
    ("sample/samples.safetensors", "sample/samples.safetensors"),
])
def test_evaluate_never_overwrites_the_stage_report_or_the_samples_it_reads(run_copy, target, out):
    before = snapshot(run_copy)
    result, text = _invoke("evaluate", run_copy / target, "--steps", "2", "--out", run_copy / out)
    what = "the evaluate stage's own report" if out.endswith("metrics.json") else "the samples file being evaluated"
    _refused(result, text, f"--out {run_copy / out} is {what}", "choose another path")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("target, out, shown", [
    (".", "evaluate/stage.json", "is a file of the run"),
    ("sample/samples.safetensors", "denoiser/stage.json", "is a file of the run"),
    (".", "recipe.yaml", "the report is a JSON file; give a path ending in .json"),
    (".", "denoiser/denoiser.safetensors", "the report is a JSON file; give a path ending in .json"),
])
def test_evaluate_never_overwrites_a_record_weights_or_the_recipe_of_the_run(run_copy, target, out, shown):
    before = snapshot(run_copy)
    result, text = _invoke("evaluate", run_copy / target, "--steps", "2", "--out", run_copy / out)
    _refused(result, text, f"--out {run_copy / out}", shown)
    assert snapshot(run_copy) == before


def test_evaluate_may_rewrite_an_earlier_report_of_its_own(run_copy):
    earlier = run_copy / "evaluate" / "metrics-mine.json"
    earlier.write_text("{}")
    result, text = _invoke("evaluate", run_copy, "--metrics", "mean_brightness", "--num-samples", "2",
                           "--guidance", "1", "--steps", "2", "--out", earlier)
    assert result.exit_code == 0, text
    assert "mean_brightness" in earlier.read_text()


def test_evaluate_suggests_a_json_name_for_an_out_that_is_a_directory(run_copy, tmp_path):
    (tmp_path / "od" / "m.json").mkdir(parents=True)
    result, text = _invoke("evaluate", run_copy, "--out", tmp_path / "od" / "m.json")
    _refused(result, text, f"is a directory; give a file name such as {tmp_path / 'od' / 'm.json' / 'metrics.json'}")
    assert "samples.mp4" not in text


# -- 6: weights of another size: a short message ------------------------------------------------------


@pytest.mark.parametrize("stage, weights", [("denoiser", "denoiser.safetensors"),
                                            ("tokenizer", "tokenizer.safetensors")])
def test_weights_of_other_sizes_are_named_in_a_short_message(run_copy, tmp_path, stage, weights):
    target = run_copy / stage / weights
    state = load_file(str(target))
    save_file({k: v if k == "latent_scale" else torch.zeros(*(s + 1 for s in v.shape)) for k, v in state.items()},
              str(target))
    _record_digest(target)
    before = snapshot(run_copy)
    result, text = _invoke("sample", run_copy, "--steps", "2", "--out", tmp_path / "s.mp4")
    mismatched = len(state) - (stage == "denoiser")  # every tensor but the latent scale
    _refused(result, text, str(target), "size mismatch for ", " (file [", f"and {mismatched - 3} more")
    assert text.count("size mismatch for") == 3
    assert len(result.output.strip().splitlines()) <= 2
    assert snapshot(run_copy) == before and not (tmp_path / "s.mp4").exists()


# -- 7: a directory given as a recipe ------------------------------------------------------------------


def test_run_of_a_directory_says_it_is_a_directory(run_copy, tmp_path):
    result, text = _invoke("run", run_copy)
    _refused(result, text, f"{run_copy} is a directory, not a recipe file", f"its recipe is {run_copy / 'recipe.yaml'}")
    (tmp_path / "empty").mkdir()
    result, text = _invoke("validate", tmp_path / "empty")
    _refused(result, text, f"{tmp_path / 'empty'} is a directory, not a recipe file")
    assert "not found" not in text


# -- 9: a stage record that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe garbage", b"[1, 2]", b"{\"stage\": "])
def test_an_unreadable_stage_record_is_named_and_the_stage_kept(run_copy, garbage):
    record = run_copy / "tokenizer" / "stage.json"
    record.write_bytes(garbage)
    before = snapshot(run_copy, skip=("run.log",))  # the log records why the run stopped
    result, text = _invoke("run", run_copy / "recipe.yaml", "--set", f"output_dir={run_copy.parent}")
    _refused(result, text, f"the record of stage 'tokenizer', {record}, is unreadable", "refusing to overwrite",
             "--force")
    assert "has no stage record" not in text
    assert snapshot(run_copy, skip=("run.log",)) == before
    result, text = _invoke("sample", run_copy, "--steps", "2", "--out", run_copy.parent / "s.mp4")
    _refused(result, text, f"the record of stage 'tokenizer', {record}, is unreadable")
    assert snapshot(run_copy, skip=("run.log",)) == before


def test_latents_that_are_all_the_same_stop_the_latents_stage_with_a_message(tmp_path, standins, monkeypatch):
    """A tokenizer that collapsed (every clip to one code) leaves latents of std 0: the stage says so
    instead of dividing by it."""
    import standins as module
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(tmp_path / "runs"))))
    assert _invoke("run", path, "--stage", "tokenizer")[0].exit_code == 0
    real = module.TinyTokenizer.encode
    monkeypatch.setattr(module.TinyTokenizer, "encode", lambda self, video: real(self, video) * 0.0)
    result, text = _invoke("run", path, "--stage", "latents")
    assert result.exit_code == 1, result.output
    assert "the tokenizer's latents of the 8 training clips have std 0.0: every clip encodes to the same latent" in text
    assert "set latents.scale in the recipe" in text and "Traceback" not in text
    assert not (tmp_path / "runs" / "tiny" / "latents" / "latents.safetensors").exists()

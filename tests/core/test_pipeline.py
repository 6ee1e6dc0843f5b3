"""A whole run through every stage with tiny stand-in components, and the stage bookkeeping."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from standins import tiny_recipe

from vqvdm_core import create, load_recipe
from vqvdm_core.pipeline import run_recipe
from vqvdm_core.pipeline.run_dir import StageMismatchError

STAGES = ["tokenizer", "latents", "denoiser", "sample", "evaluate"]


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, module_standins):
    """One whole run shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("pipeline") / "runs"
    recipe = load_recipe(tiny_recipe(output_dir=str(root)))
    ctx = run_recipe(recipe, console=quiet())
    return recipe, ctx.run.path


def test_every_stage_writes_its_artefacts(tiny_run):
    _, run = tiny_run
    assert (run / "recipe.yaml").is_file() and (run / "run.log").is_file()
    for stage in STAGES:
        record = json.loads((run / stage / "stage.json").read_text())
        assert record["status"] == "done", stage
    assert (run / "tokenizer" / "tokenizer.safetensors").is_file()
    assert list((run / "tokenizer" / "val").glob("recon_step*.mp4"))
    assert (run / "tokenizer" / "metrics.jsonl").is_file()
    assert (run / "latents" / "latents.safetensors").is_file()
    assert (run / "denoiser" / "denoiser.safetensors").is_file()
    assert (run / "sample" / "grid.mp4").stat().st_size > 0
    assert (run / "sample" / "grid.gif").stat().st_size > 0
    report = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert [r["guidance_scale"] for r in report["results"]] == [0.0, 2.0]
    for r in report["results"]:
        assert r["num_samples"] == 4
        assert -1.0 <= r["values"]["mean_brightness"]["mean"] <= 1.0
        assert 0.0 < r["latent_std_ratio"] < float("inf")


def test_latents_stage_records_scale_and_classes(tiny_run):
    from safetensors.torch import load_file

    _, run = tiny_run
    info = json.loads((run / "latents" / "stage.json").read_text())["info"]
    assert info["count"] == 8 and info["num_classes"] == 2
    assert info["latent_shape"] == [2, 4, 4, 4]
    # The record's std is the cached latents' own, and the denoiser was trained and saved with its scale.
    cached = load_file(str(run / "latents" / "latents.safetensors"))
    assert info["latent_std"] == pytest.approx(float(cached["latent"].std()), rel=1e-6)
    assert info["scale"] == pytest.approx(1.0 / float(cached["latent"].std()), rel=1e-6)
    saved = load_file(str(run / "denoiser" / "denoiser.safetensors"))
    assert float(saved["latent_scale"]) == pytest.approx(info["scale"], rel=1e-6)


def test_the_evaluate_report_holds_what_its_clips_score(tiny_run, standins):
    from vqvdm_core.pipeline import open_run
    from vqvdm_core.pipeline.conditions import cycle
    from vqvdm_core.pipeline.stages.evaluate import build_metrics, generate_and_score

    recipe, run = tiny_run
    report = json.loads((run / "evaluate" / "metrics.json").read_text())
    ctx = open_run(run, console=quiet())
    system = ctx.system(trained=True)
    conditions = cycle(ctx.latents_meta(), recipe.evaluate.num_samples, fps=recipe.sample.fps)
    for stored in report["results"]:
        again = generate_and_score(ctx, system, build_metrics(ctx), conditions, guidance_scale=stored["guidance_scale"],
                                   sampler=recipe.evaluate.sampler, steps=recipe.evaluate.steps)
        assert again["values"] == stored["values"]  # the same seeded clips, the same numbers
        assert again["latent_std_ratio"] == pytest.approx(stored["latent_std_ratio"])
    brightness = [r["values"]["mean_brightness"]["mean"] for r in report["results"]]
    assert brightness[0] != brightness[1]  # the two guidance scales gave different clips


def test_a_run_ends_with_its_times_where_to_look_and_what_to_try_next(tiny_run):
    _, run = tiny_run
    log = (run / "run.log").read_text()
    assert re.search(r"stages done in \d+ (min \d+ )?s \(tokenizer \d+ (min \d+ )?s, latents .*, evaluate "
                     r"\d+ (min \d+ )?s\)", log)
    assert f"report: {run / 'report.html'}" in log
    assert f"samples: {run / 'sample' / 'grid.mp4'}" in log
    assert f"vqvdm sample {run} --num 4 --out clips.mp4" in log
    assert f"vqvdm export {run} exports/{run.name}" in log


def test_rerun_of_the_same_recipe_skips_every_stage(tiny_run, tmp_path, standins):
    recipe, run = tiny_run
    before = {s: (run / s / "stage.json").stat().st_mtime_ns for s in STAGES}
    run_recipe(recipe, console=quiet())
    after = {s: (run / s / "stage.json").stat().st_mtime_ns for s in STAGES}
    assert before == after


def test_changed_recipe_is_refused_unless_forced(tiny_run, tmp_path, standins):
    _, original = tiny_run
    run = tmp_path / "runs" / original.name
    shutil.copytree(original, run)
    changed = load_recipe(tiny_recipe(output_dir=str(tmp_path / "runs")),
                          ["train.denoiser.steps=2"])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(StageMismatchError, match="different recipe"):
        run_recipe(changed, console=quiet())
    # Refused before anything was written: the run keeps the recipe its outputs were made by; the
    # log only gains the refusal.
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    log = run / "run.log"
    assert after[log].startswith(before[log]) and b"run stopped: StageMismatchError" in after[log][len(before[log]):]
    assert {p: v for p, v in after.items() if p != log} == {p: v for p, v in before.items() if p != log}
    assert load_recipe(run / "recipe.yaml").train.denoiser.steps == 4
    run_recipe(changed, console=quiet(), force=True)
    record = json.loads((run / "denoiser" / "stage.json").read_text())
    assert record["info"]["steps"] == 2
    # The tokenizer did not depend on the change and was kept.
    assert json.loads((run / "tokenizer" / "stage.json").read_text())["status"] == "done"


def test_identity_tokenizer_has_nothing_to_train(tmp_path, standins):
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "runs"), tokenizer={"name": "identity"}))
    ctx = run_recipe(recipe, stages=["tokenizer", "latents"], console=quiet())
    info = json.loads((ctx.run.path / "latents" / "stage.json").read_text())["info"]
    assert info["latent_shape"] == [3, 4, 8, 8]
    assert not (ctx.run.path / "tokenizer" / "tokenizer.safetensors").exists()


def test_a_later_stage_without_its_inputs_says_what_to_run(tmp_path, standins):
    from vqvdm_core import UserError

    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "runs")))
    with pytest.raises(UserError, match="run it first"):
        run_recipe(recipe, stages=["denoiser"], console=quiet())


@pytest.fixture
def run_copy(tiny_run, tmp_path, standins):
    """A private copy of the shared run (for commands that write into it)."""
    _, original = tiny_run
    shutil.copytree(original, tmp_path / original.name)
    return tmp_path / original.name


def test_sample_stage_keeps_every_clip_with_its_conditions(tiny_run):
    from vqvdm_core.pipeline.samples_file import load_samples

    _, run = tiny_run
    video, labels, fps = load_samples(run / "sample" / "samples.safetensors")
    assert video.shape == (2, 3, 4, 8, 8)  # 2 classes x 1 fps x 1 per condition
    assert labels.tolist() == [0, 1] and fps.tolist() == [8.0, 8.0]
    assert video.min() >= -1 and video.max() <= 1


def test_sample_command_writes_grid_videos_and_clips(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples

    out = tmp_path / "s.mp4"
    result = CliRunner().invoke(app, ["sample", str(run_copy), "--label", "1", "--fps", "8",
                                      "--num", "3", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0 and out.with_suffix(".gif").stat().st_size > 0
    video, labels, fps = load_samples(out.with_suffix(".safetensors"))
    assert video.shape[0] == 3 and labels.tolist() == [1, 1, 1] and fps.tolist() == [8.0] * 3


@pytest.mark.parametrize("given, used", [([], "bf16"), (["--precision", "fp32"], "fp32")])
def test_sample_command_samples_in_the_recipes_precision_unless_told(run_copy, tmp_path, monkeypatch, given, used):
    from typer.testing import CliRunner

    import vqvdm_core.pipeline.generate as generating
    from vqvdm_core.cli import app

    seen, real = [], generating.generate

    def recording(*args, **kwargs):
        seen.append(kwargs["precision"])
        return real(*args, **kwargs)

    monkeypatch.setattr(generating, "generate", recording)
    args = ["sample", str(run_copy), "--label", "1", "--fps", "8", "--num", "1", "--steps", "2",
            "--out", str(tmp_path / "s.mp4"), *given]
    recipe = yaml.safe_load((run_copy / "recipe.yaml").read_text())
    recipe["sample"]["precision"] = "bf16"  # not part of any stage's hash: the run stays up to date
    (run_copy / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == [used]


def test_evaluate_command_scores_a_run_and_a_samples_file(run_copy):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    stage_report = (run_copy / "evaluate" / "metrics.json").read_bytes()
    args = ["evaluate", str(run_copy), "--metrics", "mean_brightness", "--num-samples", "2", "--guidance", "1",
            "--steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # The stage's own report is kept; the command's goes beside it, named by its settings.
    assert (run_copy / "evaluate" / "metrics.json").read_bytes() == stage_report
    [written] = (run_copy / "evaluate").glob("metrics-*.json")
    report = json.loads(written.read_text())
    assert [r["guidance_scale"] for r in report["results"]] == [1.0]
    assert report["results"][0]["num_samples"] == 2
    again = CliRunner().invoke(app, args[:-1] + ["3"])  # other settings: another file
    assert again.exit_code == 0, again.output
    assert len(list((run_copy / "evaluate").glob("metrics-*.json"))) == 2
    assert (run_copy / "evaluate" / "metrics.json").read_bytes() == stage_report

    samples = run_copy / "sample" / "samples.safetensors"
    result = CliRunner().invoke(app, ["evaluate", str(samples)])
    assert result.exit_code == 0, result.output
    scored = json.loads((run_copy / "sample" / "samples.metrics.json").read_text())
    assert scored["results"][0]["num_samples"] == 2
    assert "mean_brightness" in scored["results"][0]["values"]


def test_a_run_folder_copied_under_another_name_samples_evaluates_and_exports(tiny_run, tmp_path, standins):
    """``cp -r runs/tiny /scratch/qs-copy``: the folder given is the run, whatever the recipe's name;
    what the commands write goes into the copy, and the original is left as it was."""
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples

    _, original = tiny_run
    before = {p: p.read_bytes() for p in sorted(original.rglob("*")) if p.is_file()}
    moved = Path(shutil.copytree(original, tmp_path / "scratch" / "qs-copy"))
    assert moved.name != load_recipe(moved / "recipe.yaml").name
    runner = CliRunner()

    result = runner.invoke(app, ["sample", str(moved), "--label", "1", "--fps", "8", "--num", "2",
                                 "--steps", "2", "--out", str(tmp_path / "s.mp4")])
    assert result.exit_code == 0, result.output
    assert load_samples(tmp_path / "s.safetensors")[0].shape[0] == 2
    result = runner.invoke(app, ["evaluate", str(moved), "--metrics", "mean_brightness", "--num-samples", "2",
                                 "--guidance", "1", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert len(list((moved / "evaluate").glob("metrics-*.json"))) == 1
    result = runner.invoke(app, ["export", str(moved), str(tmp_path / "pipeline")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    assert {p: p.read_bytes() for p in sorted(original.rglob("*")) if p.is_file()} == before
    assert not (tmp_path / "scratch" / load_recipe(moved / "recipe.yaml").name).exists()


def test_sample_and_evaluate_take_any_registered_sampler_and_record_it(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples

    clips = {}
    for name in ("ddim", "dpmpp_2m"):
        out = tmp_path / f"{name}.mp4"
        result = CliRunner().invoke(app, ["sample", str(run_copy), "--label", "1", "--fps", "8", "--steps", "3",
                                          "--sampler", name, "--out", str(out)])
        assert result.exit_code == 0, result.output
        clips[name] = load_samples(out.with_suffix(".safetensors"))[0]
    assert not torch.equal(clips["ddim"], clips["dpmpp_2m"])  # the sampler was used

    result = CliRunner().invoke(app, ["evaluate", str(run_copy), "--metrics", "mean_brightness", "--num-samples",
                                      "2", "--guidance", "1", "--steps", "4", "--sampler", "dpmpp_2m",
                                      "--set", "evaluate.sampler.spacing=log_snr", "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    [res] = json.loads((tmp_path / "m.json").read_text())["results"]
    assert res["sampler"] == "dpmpp_2m(spacing=log_snr)" and res["steps"] == 4
    assert res["denoiser_calls"] == len(create("schedule", "ddpm", num_train_steps=50).chain(4, spacing="log_snr"))


def test_sample_command_draws_clips_longer_than_the_trained_length(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples

    out = tmp_path / "long.mp4"
    result = CliRunner().invoke(app, ["sample", str(run_copy), "--label", "0", "--fps", "8", "--steps", "2",
                                      "--frames", "12", "--overlap", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    video, labels, _ = load_samples(out.with_suffix(".safetensors"))
    assert video.shape == (1, 3, 12, 8, 8) and labels.tolist() == [0]


def test_sample_command_continues_a_data_set_clip_or_a_video_file(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples
    from vqvdm_core.io.video import read_video, write_video
    from standins import TinyClips

    out = tmp_path / "cont.mp4"
    result = CliRunner().invoke(app, ["sample", str(run_copy), "--context", "val:1", "--context-frames", "2",
                                      "--frames", "6", "--num", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    video, labels, fps = load_samples(out.with_suffix(".safetensors"))
    given = TinyClips(seed=1)[1]["video"]
    assert video.shape == (2, 3, 6, 8, 8) and labels.tolist() == [-1, -1] and fps.tolist() == [8.0, 8.0]
    assert (video[:, :, :2] - given[None, :, :2]).abs().max() < 1 / 127  # the given frames, kept
    grid, _ = read_video(out)
    assert grid.shape[0] == 6 and grid.shape[2] > 3 * 8  # given clip + 2 continuations side by side

    clip = tmp_path / "clip.mp4"
    write_video(given, clip, fps=4.0, lossless=True)
    result = CliRunner().invoke(app, ["sample", str(run_copy), "--context", str(clip), "--label", "1",
                                      "--steps", "2", "--out", str(tmp_path / "file.mp4")])
    assert result.exit_code == 0, result.output
    video, labels, fps = load_samples(tmp_path / "file.safetensors")
    assert video.shape == (1, 3, 4, 8, 8) and labels.tolist() == [1] and fps.tolist() == [4.0]  # the file's rate


def test_sample_command_refuses_a_bad_context_before_sampling(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.io.video import write_video

    text_file = tmp_path / "notes.mp4"
    text_file.write_text("not a video")
    large = tmp_path / "large.mp4"
    write_video(torch.zeros(3, 4, 16, 16), large, fps=8.0)
    short = tmp_path / "short.mp4"
    write_video(torch.zeros(3, 1, 8, 8), short, fps=8.0)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["--context", "val:1", "--context-frames", "4"], "leaves nothing to generate up to 4 frames"),
        (["--context", "val:99"], "the val data has"),
        (["--context", str(tmp_path / "missing.mp4")], "no such video file"),
        (["--context", str(text_file)], str(text_file)),
        (["--context", str(large), "--context-frames", "2"], "frames are 16x16 but the model makes 8x8"),
        (["--context", str(short), "--context-frames", "2"], "has 1 frames, fewer than --context-frames 2"),
        (["--frames", "8", "--overlap", "4"], "overlap must be between 1 and 3"),
        (["--out", str(blocker / "s.mp4")], f"{blocker} is a file, not a folder"),
    ]
    for args, message in cases:
        out = tmp_path / "never.mp4"
        result = CliRunner().invoke(app, ["sample", str(run_copy), "--steps", "2", "--out", str(out), *args])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and message in text and "Traceback" not in text, (args, result.output)
        assert not out.exists() and not out.with_suffix(".safetensors").exists()
    result = CliRunner().invoke(app, ["sample", str(run_copy), "--context-frames", "2"])
    assert result.exit_code == 2 and "--context-frames needs --context" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_an_unknown_sampler_is_refused_before_any_work_with_the_names(command, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    result = CliRunner().invoke(app, [command, str(tmp_path / "no-such-run"), "--sampler", "dpmpp2m"])
    text = " ".join(result.output.replace("│", " ").split())  # the usage-error panel wraps lines
    assert result.exit_code == 2 and "Traceback" not in text
    assert "unknown sampler 'dpmpp2m'. Did you mean 'dpmpp_2m'?" in text
    assert "Available samplers: ddim, ddpm, dpmpp_2m" in text and "no-such-run" not in text
    helped = CliRunner().invoke(app, [command, "--help"])
    assert "ddim, ddpm, dpmpp_2m" in " ".join(helped.output.replace("│", " ").split())


def test_evaluate_warns_when_generated_latents_are_off_the_training_scale(run_copy, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    report = tmp_path / "report.json"
    args = ["evaluate", str(run_copy), "--metrics", "mean_brightness", "--num-samples", "2",
            "--guidance", "1", "--steps", "2", "--out", str(report)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    ratio = json.loads(report.read_text())["results"][0]["latent_std_ratio"]

    # Pretend the training latents were 1000x wider: the same samples are then far too narrow.
    record_path = run_copy / "latents" / "stage.json"
    record = json.loads(record_path.read_text())
    record["info"]["latent_std"] *= 1000.0
    record_path.write_text(json.dumps(record))
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    shrunk = json.loads(report.read_text())["results"][0]["latent_std_ratio"]
    assert shrunk == pytest.approx(ratio / 1000.0, rel=1e-3)
    assert "off the data's scale" in second.output
    assert ("off the data's scale" in first.output) == (not 0.5 <= ratio <= 2.0)


def test_report_command_links_what_the_run_made(run_copy):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    result = CliRunner().invoke(app, ["report", str(run_copy)])
    assert result.exit_code == 0, result.output
    page = (run_copy / "report.html").read_text()
    assert "sample/grid.gif" in page and "mean_brightness/mean" in page
    assert "loss_curves.png" in page and "recipe" in page.lower()


def test_latent_moments_give_the_std_of_every_value_seen_in_chunks():
    from vqvdm_core.pipeline.generate import LatentMoments

    values = torch.randn(5, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3.0 + 1.5
    moments = LatentMoments()
    for chunk in values.split(2):
        moments.update(chunk)
    assert moments.count == values.numel()
    assert moments.std == pytest.approx(float(values.double().std(unbiased=False)), rel=1e-9)
    assert math.isnan(LatentMoments().std)


# -- one process per run directory; failures on record -------------------------------------------------


HOLD_LOCK = """
import sys, time
from types import SimpleNamespace
from vqvdm_core.pipeline.run_dir import RunDir
with RunDir(SimpleNamespace(output_dir=sys.argv[1], name="tiny")).lock("holder for the test"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_is_refused_and_a_dead_holder_is_taken_over(tmp_path, standins):
    import subprocess
    import sys

    import yaml

    from vqvdm_core.pipeline.run_dir import RunLockedError

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(tmp_path / "runs"))))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "runs")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        recipe = load_recipe(path, ["train.tokenizer.steps=2", "train.denoiser.steps=2"])
        with pytest.raises(RunLockedError, match=rf"in use by another process \(PID {holder.pid}, holder for the test"):
            run_recipe(recipe, console=quiet())
        assert not (tmp_path / "runs" / "tiny" / "recipe.yaml").exists()  # nothing written
    finally:
        holder.kill()  # SIGKILL: no clean-up; the lock file still names it
        holder.wait()
    lock = tmp_path / "runs" / "tiny" / ".lock"
    assert str(holder.pid) in lock.read_text()
    record = []
    console = Console(file=open("/dev/null", "w"), force_terminal=False)
    console.print = lambda *args, **kwargs: record.append(" ".join(map(str, args)))  # type: ignore[method-assign]
    run_recipe(recipe, stages=["tokenizer"], console=console)
    assert any(f"from process {holder.pid}, which is no longer running" in line for line in record)
    assert not lock.exists()  # released cleanly


def test_evaluate_says_when_it_takes_over_the_lock_of_a_dead_process(run_copy):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (run_copy / ".lock").write_text(json.dumps({"pid": pid, "command": "vqvdm evaluate", "since": "earlier"}))
    result = CliRunner().invoke(app, ["evaluate", str(run_copy), "--metrics", "mean_brightness", "--num-samples", "2",
                                      "--guidance", "1"])
    assert result.exit_code == 0, result.output
    assert f"took over {run_copy} from process {pid}, which is no longer running" in " ".join(result.output.split())
    assert not (run_copy / ".lock").exists()


def test_a_failing_stage_is_recorded_failed_in_its_record_and_the_run_log(tmp_path, standins, monkeypatch):
    from typer.testing import CliRunner

    import yaml

    from vqvdm_core.cli import app
    from vqvdm_core.engine.trainer import NonFiniteLossError
    from vqvdm_core.pipeline import STAGE_FUNCTIONS

    def diverge(ctx):
        warnings.warn("a warning raised while the stage works")
        raise NonFiniteLossError("tokenizer: non-finite loss at step 3", step=3)

    monkeypatch.setitem(STAGE_FUNCTIONS, "tokenizer", diverge)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(tmp_path / "runs"))))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 1  # a failure of the work, not of the input
    assert "non-finite loss at step 3" in result.output and "Traceback" not in result.output
    run = tmp_path / "runs" / "tiny"
    record = json.loads((run / "tokenizer" / "stage.json").read_text())
    assert record["status"] == "failed" and "NonFiniteLossError: tokenizer: non-finite loss" in record["error"]
    log = (run / "run.log").read_text()
    assert "a warning raised while the stage works" in log
    assert "[tokenizer] failed: NonFiniteLossError" in log and "run stopped" in log
    assert not (run / "latents").exists()
    monkeypatch.undo()
    from vqvdm_core.pipeline.run_dir import RunDir

    assert RunDir(load_recipe(path)).plan("tokenizer", force=False) == "resume"  # a failed stage resumes


# -- files that are not what they claim ----------------------------------------------------------------


def _invoke(*args: str):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    result = CliRunner().invoke(app, list(args))
    return result, " ".join(result.output.split())


def test_an_output_dir_below_a_file_is_refused(tmp_path, standins):
    import yaml

    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(blocker))))
    result, text = _invoke("run", str(path))
    assert result.exit_code == 2 and "Traceback" not in text
    assert f"{blocker} is a file, not a folder" in text
    assert blocker.read_text() == "a file where the runs folder should be"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_a_run_directory_that_is_not_writable_is_refused(tmp_path, standins):
    import yaml

    root = tmp_path / "runs"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny").chmod(0o500)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(root))))
    try:
        result, text = _invoke("run", str(path))
    finally:
        (root / "tiny").chmod(0o700)
    assert result.exit_code == 2 and "is not writable" in text


@pytest.mark.parametrize("stage, weights", [("tokenizer", "tokenizer.safetensors"),
                                            ("denoiser", "denoiser.safetensors")])
def test_weights_of_another_architecture_are_named_and_refused(run_copy, tmp_path, stage, weights):
    from safetensors.torch import save_file

    target = run_copy / stage / weights
    save_file({"conv.weight": torch.zeros(3, 3)}, str(target))
    (run_copy / stage / f"{weights}.sha256").unlink()  # replaced on purpose: its old digest goes too
    before = target.read_bytes()
    result, text = _invoke("sample", str(run_copy), "--steps", "2", "--out", str(tmp_path / "s.mp4"))
    assert result.exit_code == 2 and "Traceback" not in text, result.output
    assert str(target) in text and ("does not hold weights" in text or "does not match this system" in text)
    assert target.read_bytes() == before and not (tmp_path / "s.mp4").exists()


def test_a_samples_file_that_is_not_one_is_refused(run_copy, tmp_path):
    from safetensors.torch import save_file

    text_file = run_copy / "sample" / "notes.safetensors"
    text_file.write_text("not a samples file")
    result, text = _invoke("evaluate", str(text_file))
    assert result.exit_code == 2 and "is not a vqvdm samples file" in text and "Traceback" not in text
    wrong = run_copy / "sample" / "wrong.safetensors"
    save_file({"video": torch.zeros(2, 3, 4, 8, 8), "label": torch.zeros(2, dtype=torch.long),
               "fps": torch.zeros(2)}, str(wrong))  # float video: not 8-bit clips
    result, text = _invoke("evaluate", str(wrong))
    assert result.exit_code == 2 and "expected video uint8 (N, 3, T, H, W)" in text
    assert not (run_copy / "sample" / "wrong.metrics.json").exists()


def test_running_out_of_memory_is_one_message(run_copy, tmp_path, monkeypatch):
    import vqvdm_core.pipeline.generate as generate_module

    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 983040000000 bytes.")
        yield  # a generator, as the real one

    monkeypatch.setattr(generate_module, "generate", allocate)
    result, text = _invoke("sample", str(run_copy), "--batch-size", "100000", "--out", str(tmp_path / "s.mp4"))
    assert result.exit_code == 2 and "out of memory" in text and "lower the batch size" in text
    assert "Traceback" not in text and "can't allocate memory" in text


@pytest.mark.parametrize("args, shown", [
    (["--num", "1000000"], "sampling 2,000,000 clips of 4x8x8 (1,000,000 per class and FPS value)"),
    (["--label", "0", "--fps", "8", "--frames", "100000000"], "sampling 1 clips of 100000000x"),
])
def test_sampling_more_than_memory_holds_is_refused_before_any_work(run_copy, tmp_path, monkeypatch, args, shown):
    import vqvdm_core.pipeline.generate as generate_module
    import vqvdm_core.runtime.devices as devices

    def never(*a, **kw):
        raise AssertionError("sampling started")
        yield

    monkeypatch.setattr(generate_module, "generate", never)
    monkeypatch.setattr(devices, "available_memory", lambda device="cpu": 8 * 10**9)
    result, text = _invoke("sample", str(run_copy), *args, "--out", str(tmp_path / "s.mp4"))
    assert result.exit_code == 2, text
    assert shown in text and "of memory; 8.0 GB is free on cpu" in text and "Ask for fewer clips" in text
    assert "Traceback" not in text and not list(tmp_path.glob("s.*"))


def _say_lines() -> tuple[Console, list[str]]:
    lines: list[str] = []
    console = Console(file=open("/dev/null", "w"), force_terminal=False)
    console.print = lambda *args, **kwargs: lines.append(" ".join(map(str, args)))  # type: ignore[method-assign]
    return console, lines


def test_a_stage_left_running_resumes_from_its_checkpoint_and_is_then_done(run_copy):
    record_path = run_copy / "denoiser" / "stage.json"
    record = json.loads(record_path.read_text())
    record.update(status="running", finished=None, info=None)  # as a killed run leaves it
    record_path.write_text(json.dumps(record))
    from safetensors.torch import load_file

    weights = load_file(str(run_copy / "denoiser" / "denoiser.safetensors"))
    console, lines = _say_lines()
    run_recipe(load_recipe(run_copy / "recipe.yaml", [f"output_dir={run_copy.parent}"]), console=console)
    assert "[denoiser] resuming" in lines and "[tokenizer] up to date, skipped" in lines
    assert json.loads(record_path.read_text())["status"] == "done"
    # It resumed at its last checkpoint (the final step): no further training, the same weights.
    resumed = load_file(str(run_copy / "denoiser" / "denoiser.safetensors"))
    assert resumed.keys() == weights.keys() and all(torch.equal(resumed[k], weights[k]) for k in weights)


def test_a_stage_folder_without_its_record_is_refused_unless_forced(run_copy):
    (run_copy / "denoiser" / "stage.json").unlink()
    kept = sorted(p.name for p in (run_copy / "denoiser").iterdir())
    recipe = load_recipe(run_copy / "recipe.yaml", [f"output_dir={run_copy.parent}"])
    with pytest.raises(StageMismatchError, match="exists but has no stage record; refusing to overwrite"):
        run_recipe(recipe, console=quiet())
    assert sorted(p.name for p in (run_copy / "denoiser").iterdir()) == kept
    console, lines = _say_lines()
    run_recipe(recipe, console=console, force=True)
    assert "[denoiser] starting" in lines
    assert json.loads((run_copy / "denoiser" / "stage.json").read_text())["status"] == "done"

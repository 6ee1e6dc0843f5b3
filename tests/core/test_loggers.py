"""Experiment loggers (a recipe's ``loggers:``): every scalar of metrics.jsonl and of the evaluate
report reaches each sink, read back from the sink's own files; videos and the recipe too; sinks are
closed even when a stage fails; a sink whose package is missing is one clear error."""

from __future__ import annotations

import csv
import json
import math
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from standins import tiny_recipe

from vqvdm_core import load_recipe
from vqvdm_core.engine.loggers import LoggerSet
from vqvdm_core.errors import ComponentError, RecipeError
from vqvdm_core.interfaces import ExperimentLogger, RunInfo
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.pipeline import STAGE_FUNCTIONS, run_recipe
from vqvdm_core.pipeline.run_dir import STAGE_HASH_PATHS, stage_hash
from vqvdm_core.registry import REGISTRY, Registry

REPO = Path(__file__).resolve().parents[2]
TRAINED = ("tokenizer", "denoiser")


class Recorder(ExperimentLogger):
    """A third party's sink: remembers everything it is given (every instance, in ``made``)."""

    made: list["Recorder"] = []

    class Config(ComponentConfig):
        label: str = "r"

    def __init__(self, config: "Recorder.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.opened: list[RunInfo] = []
        self.scalars: dict[tuple[str, int, str], float] = {}
        self.calls = 0
        self.videos: list[tuple[str, str, int, Path, bool]] = []
        self.closed: list[bool] = []
        Recorder.made.append(self)

    def open(self, run: RunInfo) -> None:
        self.opened.append(run)

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        assert self.opened and not self.closed
        self.calls += 1
        for name, value in values.items():
            key = (stage, step, name)
            assert key not in self.scalars, f"{key} logged twice"
            self.scalars[key] = value

    def log_video(self, name: str, path: Path, *, step: int, stage: str, fps: float) -> None:
        self.videos.append((stage, name, step, path, path.is_file()))

    def close(self, *, failed: bool = False) -> None:
        self.closed.append(failed)


class Exploding(Recorder):
    """Fails at ``open`` or at the first value."""

    class Config(ComponentConfig):
        at: str = "log"

    def open(self, run: RunInfo) -> None:
        if self.config.at == "open":
            raise RuntimeError("no server at localhost:1")
        super().open(run)

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        raise ConnectionError("tracker unreachable")


@pytest.fixture(scope="module")
def recorders() -> Iterator[None]:
    for name, cls in (("recorder", Recorder), ("exploding", Exploding)):
        REGISTRY.register("logger", name, cls, replace=True)
    try:
        yield
    finally:
        for name in ("recorder", "exploding"):
            REGISTRY.unregister("logger", name)


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, module_standins, recorders):
    """One tiny run with every built-in sink (W&B offline) and a third party's."""
    root = tmp_path_factory.mktemp("loggers")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb-dir"), "WANDB_SILENT": "true",
                           "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true"}.items():
            mp.setenv(key, value)
        (root / "wandb-dir").mkdir()
        Recorder.made.clear()
        recipe = load_recipe(tiny_recipe(output_dir=str(root / "runs"), loggers=[
            "csv", "tensorboard", {"name": "wandb", "project": "vqvdm-test", "tags": ["ci"]}, "recorder"]))
        ctx = run_recipe(recipe, console=quiet())
        recorder, = Recorder.made
        yield {"recipe": recipe, "run": ctx.run.path, "wandb": root / "wandb-dir", "recorder": recorder}
        import wandb

        wandb.teardown()


# -- what every sink must hold, from the run's own files -------------------------------------------


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_scalars(run: Path) -> dict[tuple[str, int, str], float]:
    """``(stage, step, name) -> value`` of every number the run recorded: each training stage's
    metrics.jsonl (validation names prefixed ``val/``) and the evaluate report (``w=<scale>/...``,
    at the denoiser's last step)."""
    out: dict[tuple[str, int, str], float] = {}
    for stage in TRAINED:
        for record in jsonl(run / stage / "metrics.jsonl"):
            for key, value in record.items():
                if key in ("tag", "step") or not isinstance(value, (int, float)):
                    continue
                name = key if record["tag"] == "train" or key.startswith("val/") else f"val/{key}"
                out[(stage, record["step"], name)] = float(value)
    steps = json.loads((run / "denoiser" / "stage.json").read_text())["info"]["steps"]
    for result in json.loads((run / "evaluate" / "metrics.json").read_text())["results"]:
        prefix = f"w={result['guidance_scale']:g}/"
        for metric, values in result["values"].items():
            for key, value in values.items():
                out[("evaluate", steps, f"{prefix}{metric}/{key}")] = value
        out[("evaluate", steps, f"{prefix}latent_std_ratio")] = result["latent_std_ratio"]
    return out


def test_the_expectation_covers_train_validation_and_evaluate_numbers(logged_run):
    expected = expected_scalars(logged_run["run"])
    names = {(stage, name) for stage, _, name in expected}
    assert {("tokenizer", "loss/generator"), ("tokenizer", "val/mse"), ("tokenizer", "val/mean"),
            ("denoiser", "loss/denoiser"), ("denoiser", "lr/denoiser"), ("denoiser", "val/time"),
            ("evaluate", "w=2/mean_brightness/mean"), ("evaluate", "w=0/latent_std_ratio")} <= names
    assert {step for stage, step, _ in expected if stage == "tokenizer"} == {2, 4}


# -- the third party's sink -----------------------------------------------------------------------


def test_a_third_party_sink_receives_every_scalar_video_and_the_recipe(logged_run):
    rec: Recorder = logged_run["recorder"]
    run = logged_run["run"]
    assert rec.scalars == expected_scalars(run)
    assert len(rec.opened) == 1 and rec.closed == [False]
    info = rec.opened[0]
    assert info.name == "tiny" and info.directory == run
    assert info.config == yaml.safe_load((run / "recipe.yaml").read_text())  # the resolved recipe
    shown = {(stage, name, step): (path, exists) for stage, name, step, path, exists in rec.videos}
    assert set(shown) == {("tokenizer", "val/recon", 2), ("tokenizer", "val/recon", 4),
                          ("denoiser", "val/samples", 4), ("sample", "grid", 4)}
    assert shown[("tokenizer", "val/recon", 2)] == (run / "tokenizer" / "val" / "recon_step0000002.gif", True)
    assert shown[("sample", "grid", 4)] == (run / "sample" / "grid.gif", True)


# -- csv ------------------------------------------------------------------------------------------


def test_the_csv_file_holds_every_scalar_once(logged_run):
    run = logged_run["run"]
    with (run / "scalars.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["stage", "step", "name", "value"]
    got = {(r["stage"], int(r["step"]), r["name"]): float(r["value"]) for r in rows}
    assert len(got) == len(rows)  # no value twice
    assert got == expected_scalars(run)


# -- TensorBoard ----------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_the_metrics_jsonl_values(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = logged_run["run"]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    expected = expected_scalars(run)
    tags = events.Tags()
    assert set(tags["scalars"]) == {f"{stage}/{name}" for stage, _, name in expected}
    for tag in tags["scalars"]:
        stage, name = tag.split("/", 1)
        got = {e.step: e.value for e in events.Scalars(tag)}
        want = {step: v for (s, step, n), v in expected.items() if (s, n) == (stage, name)}
        assert got.keys() == want.keys(), tag
        for step, value in want.items():
            assert got[step] == pytest.approx(value, rel=1e-6, abs=1e-12), (tag, step)  # stored as float32

    # Videos as animated GIFs: the files the stages wrote, byte for byte.
    recon = events.Images("tokenizer/val/recon")
    assert [e.step for e in recon] == [2, 4]
    assert recon[0].encoded_image_string == (run / "tokenizer" / "val" / "recon_step0000002.gif").read_bytes()
    grid = events.Images("sample/grid")
    assert [e.step for e in grid] == [4] and grid[0].encoded_image_string[:6] == b"GIF89a"

    # The resolved recipe: as text, and as the hyper-parameters of the HParams tab.
    text = events.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert yaml.safe_load(text) == yaml.safe_load((run / "recipe.yaml").read_text())
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_tensorboard_turns_an_mp4_into_a_gif_image(tmp_path):
    import torch
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vqvdm_core.registry import load
    from vqvdm_core.io.video import write_video

    clip = write_video(torch.linspace(-1, 1, 3 * 5 * 8 * 10).reshape(3, 5, 8, 10), tmp_path / "clip.mp4", 4.0)
    sink = load("logger", "tensorboard")(dir="tb")
    sink.open(RunInfo(name="x", directory=tmp_path, config={"a": {"b": [1, 2]}, "c": None}))
    sink.log_video("clip", clip, step=7, stage="sample", fps=4.0)
    sink.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    image, = events.Images("sample/clip")
    assert image.step == 7 and (image.width, image.height) == (10, 8)
    import io

    with Image.open(io.BytesIO(image.encoded_image_string)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5


# -- W&B ------------------------------------------------------------------------------------------


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of an offline run's ``run-<id>.wandb`` file (a LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_holds_every_scalar_the_recipe_and_the_videos(logged_run):
    run = logged_run["run"]
    folders = list((logged_run["wandb"] / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, folders  # one W&B run for the command, in $WANDB_DIR
    log, = folders[0].glob("run-*.wandb")
    rows, config, exit_code, display = [], {}, None, None
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":  # a video's fields are nested items: left out here, checked as files below
            rows.append({item.key or item.nested_key[0]: json.loads(item.value_json)
                         for item in record.history.item if item.key or len(item.nested_key) == 1})
        elif kind == "run":
            config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
            display = record.run.display_name
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "exit":
            exit_code = record.exit.exit_code
    assert display == "tiny" and exit_code == 0
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert {k: v for k, v in config.items() if not k.startswith("_")} == resolved

    got: dict[tuple[str, int, str], float] = {}
    for row in rows:
        for key, value in row.items():
            stage, _, name = key.partition("/")
            if key.startswith("_") or name == "step":
                continue
            got[(stage, row[f"{stage}/step"], name)] = value  # each value against its stage's step
    expected = expected_scalars(run)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key  # W&B writes ~14 significant digits

    videos = sorted(p.relative_to(folders[0] / "files" / "media" / "videos").parts[:-1]
                    for p in (folders[0] / "files" / "media" / "videos").rglob("*.gif"))
    assert videos == [("denoiser", "val"), ("sample",), ("tokenizer", "val"), ("tokenizer", "val")]


# -- lifetime and failures ------------------------------------------------------------------------


def test_sinks_are_closed_when_a_stage_fails(tmp_path, module_standins, recorders, monkeypatch):
    def broken(ctx):
        raise RuntimeError("the disk is full")

    monkeypatch.setitem(STAGE_FUNCTIONS, "latents", broken)
    Recorder.made.clear()
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path), loggers=["recorder", "csv"],
                                     stages=["tokenizer", "latents"]))
    with pytest.raises(RuntimeError, match="the disk is full"):
        run_recipe(recipe, console=quiet())
    rec, = Recorder.made
    assert rec.closed == [True]  # closed once, told the run failed
    assert {stage for stage, _, _ in rec.scalars} == {"tokenizer"}
    assert (tmp_path / "tiny" / "scalars.csv").read_text().count("\ntokenizer,") > 0


def test_the_evaluate_command_logs_its_scores_and_closes_the_sinks(logged_run, recorders, monkeypatch):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    Recorder.made.clear()
    result = CliRunner().invoke(app, ["evaluate", str(logged_run["run"]), "--set", "loggers=[recorder]",
                                      "--out", str(logged_run["run"].parent / "again.json")])
    assert result.exit_code == 0, result.output
    rec, = Recorder.made
    assert rec.closed == [False]
    stored = {k: v for k, v in expected_scalars(logged_run["run"]).items() if k[0] == "evaluate"}
    assert rec.scalars.keys() == stored.keys()


def test_a_sink_that_fails_while_logging_is_dropped_with_a_warning_and_the_others_go_on(tmp_path):
    first, second = Exploding(), Recorder()
    sinks = LoggerSet([first, second], run=RunInfo("x", tmp_path, {}), names=["exploding", "recorder"])
    with pytest.warns(RuntimeWarning, match="logger 'exploding' failed in log_scalars.*tracker unreachable"):
        sinks.log_scalars({"a": 1.0}, step=1, stage="s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once only
        sinks.log_scalars({"a": 2.0, "skipped": "text"}, step=2, stage="s")  # type: ignore[dict-item]
    sinks.close()
    assert second.scalars == {("s", 1, "a"): 1.0, ("s", 2, "a"): 2.0}
    assert first.closed == [True] and second.closed == [False]


def test_a_sink_that_cannot_start_is_one_error_naming_it(tmp_path, recorders):
    opened = Recorder()
    sinks = LoggerSet([opened, Exploding(at="open")], run=RunInfo("x", tmp_path, {}), names=["recorder", "exploding"])
    with pytest.raises(ComponentError, match=r"logger 'exploding' could not start: RuntimeError: no server"):
        sinks.log_scalars({"a": 1.0}, step=1, stage="s")
    assert opened.closed == [True] and not opened.scalars


def test_only_the_main_process_logs(tmp_path, module_standins, recorders):
    from vqvdm_core.engine.logging import MetricsLog

    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path), loggers=["recorder"]))
    Recorder.made.clear()
    assert len(LoggerSet.from_recipe(recipe, directory=tmp_path, enabled=False)) == 0 and not Recorder.made
    sinks = LoggerSet.from_recipe(recipe, directory=tmp_path, enabled=True)
    MetricsLog(tmp_path / "a.jsonl", enabled=False, loggers=sinks, stage="s").write({"tag": "train", "step": 1,
                                                                                    "loss/x": 1.0})
    MetricsLog(tmp_path / "b.jsonl", enabled=True, loggers=sinks, stage="s").write({"tag": "train", "step": 2,
                                                                                   "loss/x": 3.0})
    assert Recorder.made[0].scalars == {("s", 2, "loss/x"): 3.0}


def test_recipes_without_loggers_are_unchanged(tmp_path, module_standins):
    plain = load_recipe(tiny_recipe(output_dir=str(tmp_path)))
    logged = load_recipe(tiny_recipe(output_dir=str(tmp_path), loggers=["csv", {"name": "tensorboard", "dir": "tb"}]))
    assert plain.loggers == [] and plain.dump()["loggers"] == []
    assert logged.dump()["loggers"][1] == {"name": "tensorboard", "dir": "tb", "videos": True, "flush_secs": 30}
    # Adding or changing loggers never makes a stage of an existing run out of date.
    for stage in STAGE_HASH_PATHS:
        assert stage_hash(plain, stage) == stage_hash(logged, stage)


def test_a_logger_node_is_validated_like_any_component(tmp_path, module_standins):
    with pytest.raises(RecipeError) as caught:
        load_recipe(tiny_recipe(output_dir=str(tmp_path), loggers=[{"name": "csv", "path": "x.csv"}, "tensorbord"]))
    text = str(caught.value)
    assert "loggers.0.path: unknown field 'path'" in text and "(fields: file)" in text
    assert "loggers.1.name: unknown logger 'tensorbord'. Did you mean 'tensorboard'?" in text


@pytest.mark.parametrize("package", ["tensorboard", "wandb"])
def test_a_missing_package_is_one_clear_error_naming_the_extra(package, tmp_path, module_standins, monkeypatch):
    from vqvdm_core.pipeline.preflight import missing_files

    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, f"vqvdm_plugins.loggers.{package}_logger", raising=False)
    registry = fresh_registry()
    # The recipe stays valid (a run made with the logger can still be sampled where it is missing) ...
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path), loggers=["csv", package]), registry=registry)
    # ... and the run refuses to start, naming the extra
    assert missing_files(recipe, registry=registry) == [
        f"loggers.1 ({package}): the '{package}' logger needs the {package} package, which is not installed: "
        f"pip install 'vqvdm[{package}]'"]


def fresh_registry() -> Registry:
    """The installed entry points plus the stand-ins, with nothing loaded yet."""
    from standins import STANDINS

    registry = Registry()
    for (kind, name), cls in STANDINS.items():
        registry.register(kind, name, cls, replace=True)
    return registry


def test_the_cli_says_which_extra_to_install(tmp_path):
    """`vqvdm validate --check-data` of a real recipe naming tensorboard, where it is not installed."""
    code = ("import sys; sys.modules['tensorboard'] = None; from vqvdm_core.cli import main; "
            f"sys.argv = ['vqvdm', 'validate', '--check-data', {str(REPO / 'recipes' / 'quickstart.yaml')!r}, "
            "'--set', 'loggers=[tensorboard]']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'vqvdm[tensorboard]'" in proc.stdout + proc.stderr
    assert "loggers.0 (tensorboard)" in proc.stdout + proc.stderr


def test_record_values_that_are_not_finite_reach_the_sinks(tmp_path, recorders):
    from vqvdm_core.engine.logging import MetricsLog

    rec = Recorder()
    log = MetricsLog(tmp_path / "m.jsonl", loggers=LoggerSet([rec], run=RunInfo("x", tmp_path, {})), stage="s")
    log.write({"tag": "val", "step": 3, "time": 1.5, "val/fvd": float("inf"), "perplexity": float("nan"),
               "note": "text", "ok": True})
    assert set(rec.scalars) == {("s", 3, "val/time"), ("s", 3, "val/fvd"), ("s", 3, "val/perplexity")}
    assert rec.scalars[("s", 3, "val/fvd")] == math.inf and math.isnan(rec.scalars[("s", 3, "val/perplexity")])
    assert json.loads((tmp_path / "m.jsonl").read_text())["val/fvd"] == "inf"  # the file is unchanged

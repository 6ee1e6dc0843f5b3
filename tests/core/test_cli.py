"""The `vqvdm` command line through Typer's runner: output, exit codes, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from standins import tiny_recipe
from typer.testing import CliRunner

from vqvdm_core import UserError, __version__
from vqvdm_core.cli import app

runner = CliRunner()


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_list_components_json_lists_the_default_plugins_with_their_distribution():
    result = runner.invoke(app, ["list-components", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    found = {(r["kind"], r["name"]): r for r in rows}
    for key in [("tokenizer", "vqgan3d"), ("denoiser", "unet3d"), ("schedule", "ddpm"),
                ("conditioner", "fps"), ("conditioner", "class"), ("guidance", "cfg"),
                ("metric", "fvd"), ("dataset", "synthetic_motion")]:
        assert key in found, key
        assert found[key]["distribution"] == "vqvdm"


def test_list_components_filters_by_kind():
    result = runner.invoke(app, ["list-components", "--kind", "guidance", "--json"])
    assert result.exit_code == 0
    assert {r["kind"] for r in json.loads(result.output)} == {"guidance"}


def test_list_components_verbose_shows_config_fields(standins):
    result = runner.invoke(app, ["list-components", "--kind", "denoiser", "--verbose", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["name"] == "tiny_denoiser")
    fields = {f["name"]: f for f in row["config"]}
    assert fields["emb_dim"]["default"] == 16
    assert fields["in_channels"]["default"] is None


def test_unknown_kind_is_one_clear_message_and_exit_2():
    result = runner.invoke(app, ["list-components", "--kind", "denoisers"])
    assert result.exit_code == 2
    assert "unknown component kind 'denoisers'" in result.output
    assert "Traceback" not in result.output


def test_validate_accepts_a_valid_recipe(tmp_path, standins):
    path = write_recipe(tmp_path / "ok.yaml", tiny_recipe())
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_reports_every_problem_with_paths_and_exit_2(tmp_path, standins):
    data = tiny_recipe()
    data["denoiser"]["emb_dimm"] = 8                  # a typo in a component field
    data["train"]["denoiser"]["steps"] = -1           # a bad stage setting
    data["schedule"]["name"] = "ddpn"                 # an unknown component
    path = write_recipe(tmp_path / "bad.yaml", data)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    # Phase one (structure) fails first; fix it and phase two reports both component problems.
    assert "train.denoiser.steps" in result.output
    data["train"]["denoiser"]["steps"] = 3
    path = write_recipe(tmp_path / "bad.yaml", data)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "denoiser.emb_dimm" in result.output and "did you mean 'emb_dim'" in result.output
    assert "schedule.name" in result.output and "did you mean 'ddpm'" in result.output.lower()
    assert "(line " in result.output


def test_validate_applies_overrides(tmp_path, standins):
    path = write_recipe(tmp_path / "ok.yaml", tiny_recipe())
    result = runner.invoke(app, ["validate", str(path), "--set", "denoiser.emb_dim=0"])
    assert result.exit_code == 2
    assert "denoiser.emb_dim" in result.output


def test_validate_several_files_exits_2_if_any_is_invalid(tmp_path, standins):
    good = write_recipe(tmp_path / "good.yaml", tiny_recipe())
    bad = write_recipe(tmp_path / "bad.yaml", tiny_recipe(seed="zero"))
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert "good.yaml: valid" in result.output and "seed" in result.output


def test_missing_recipe_file_is_a_user_error(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "recipe file not found" in result.output
    assert "Traceback" not in result.output


def test_run_rejects_an_unknown_stage_without_traceback(tmp_path, standins):
    path = write_recipe(tmp_path / "ok.yaml", tiny_recipe(output_dir=str(tmp_path / "runs")))
    result = runner.invoke(app, ["run", str(path), "--stage", "tokeniser"])
    assert result.exit_code == 2
    assert "unknown stage 'tokeniser'" in result.output


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("VQVDM_DEBUG", "1")
    result = runner.invoke(app, ["list-components", "--kind", "nope"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)


def test_the_traceback_is_printed_with_vqvdm_debug_and_only_then():
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "vqvdm_core.cli", "list-components", "--kind", "nope"]
    env = {k: v for k, v in os.environ.items() if k != "VQVDM_DEBUG"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 2 and "unknown component kind 'nope'" in quiet.stderr
    assert "Traceback" not in quiet.stderr + quiet.stdout
    loud = subprocess.run(command, capture_output=True, text=True, env={**env, "VQVDM_DEBUG": "1"}, timeout=120)
    assert loud.returncode != 0 and "Traceback (most recent call last)" in loud.stderr
    assert "unknown component kind 'nope'" in loud.stderr.splitlines()[-1]  # the error ends the traceback


def test_module_entry_point_runs(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vqvdm_core.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and __version__ in proc.stdout


@pytest.mark.parametrize("bad", ["noequals", "=3", "a.b=[unclosed"])
def test_bad_override_text_is_reported(tmp_path, standins, bad):
    path = write_recipe(tmp_path / "ok.yaml", tiny_recipe())
    result = runner.invoke(app, ["validate", str(path), "--set", bad])
    assert result.exit_code == 2
    assert "--set" in result.output


@pytest.mark.parametrize("command, args, fragment", [
    ("sample", ["--guidance", "nan"], "nan is not a finite number"),
    ("sample", ["--guidance", "inf"], "inf is not a finite number"),
    ("sample", ["--fps", "-8"], "FPS values must be positive finite numbers, got -8.0"),
    ("sample", ["--fps", "inf"], "FPS values must be positive finite numbers, got inf"),
    ("evaluate", ["--guidance", "3", "--guidance", "nan"], "nan is not a finite number"),
])
def test_non_finite_or_out_of_range_numbers_are_refused_before_the_run_is_opened(tmp_path, command, args,
                                                                                  fragment):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("not: read\n")
    result = runner.invoke(app, [command, str(run), *args])
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and fragment in text and "Traceback" not in text
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]  # nothing written


def test_non_finite_numbers_in_a_recipe_are_errors_with_their_paths(tmp_path, standins):
    data = tiny_recipe()
    data["sample"]["fps"] = [8.0, -4.0]
    data["evaluate"]["guidance_scales"] = [float("inf")]
    data["guidance"] = {"name": "cfg", "scale": float("nan")}
    path = write_recipe(tmp_path / "r.yaml", data)  # YAML's .inf and .nan
    result = runner.invoke(app, ["validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "sample.fps.1: Input should be greater than 0" in output
    assert "evaluate.guidance_scales.0: Input should be a finite number" in output
    assert "guidance.scale: Input should be a finite number" in output


def test_list_components_checks_imports_in_a_child_and_survives_a_plugin_that_exits(make_distribution):
    import os
    import subprocess
    import sys

    from vqvdm_core.registry import GROUPS

    site = make_distribution("acme-broken", "0.1", {GROUPS["schedule"]: {
        "fine": "fake_plugins.components:TinySchedule",
        "raises": "fake_plugins.broken:NeverDefined",
        "exits": "fake_plugins.exits:Exits",
    }})
    env = {k: v for k, v in os.environ.items() if k not in ("VQVDM_DEBUG", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(Path(__file__).parent)])

    def listing(*extra: str) -> dict[str, dict]:
        proc = subprocess.run([sys.executable, "-m", "vqvdm_core.cli", "list-components", "--kind", "schedule",
                               "--json", *extra], capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode == 0, proc.stderr
        return {row["name"]: row for row in json.loads(proc.stdout)}

    rows = listing()
    assert rows["fine"]["status"] == "available" and rows["ddpm"]["status"] == "available"
    assert rows["raises"]["status"] == "broken" and "libfoo" in rows["raises"]["error"]
    assert rows["exits"]["status"] == "broken" and "sys.exit(3)" in rows["exits"]["error"]
    unchecked = listing("--no-check")
    assert {unchecked[name]["status"] for name in ("fine", "raises", "exits")} == {"unchecked"}
    verbose = listing("--verbose")  # imports here: the exiting module is caught, not obeyed
    assert verbose["exits"]["status"] == "broken" and verbose["fine"]["status"] == "loaded"

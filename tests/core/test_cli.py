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


def test_list_components_verbose_shows_choices_tuple_shapes_bounds_and_descriptions():
    result = runner.invoke(app, ["list-components", "--verbose", "--no-check", "--kind", "sampler"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert 'spacing: str = "uniform"' in result.output  # its names are the schedule's, checked at load
    assert 'space: "auto" | "sigma" | "flow" = "auto"' in result.output  # euler, heun
    assert "eta: float ≥ 0.0, ≤ 1.0 = 0.0" in result.output  # dpmpp_2m
    assert "fresh noise at every level" in result.output  # a field's description
    result = runner.invoke(app, ["list-components", "--verbose", "--no-check", "--kind", "dataset"],
                           terminal_width=200)
    assert "background_colour: [float ≥ 0, ≤ 1] × 3 | null = null" in result.output


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
    assert "'tokeniser' is not one of" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("name", "says"), [
    ("..", "which names its parent"),
    (".", "which names the output folder itself"),
    ("a/../..", "is a path"),
    ("/tmp/elsewhere", "is a path"),
    ("..\\up", "is a path"),
])
def test_a_run_name_that_is_not_one_folder_is_refused_before_any_file_is_written(tmp_path, standins, name, says):
    """``name: '..'`` once made the run folder the output folder's parent, over the user's files."""
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's own file")
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(name=name, output_dir=str(tmp_path / "runs")))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "name:" in result.output and says in result.output and "Value error" not in result.output
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert mine.read_text() == "the user's own file"


def test_debug_env_shows_the_traceback_and_keeps_the_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VQVDM_DEBUG", "1")
    result = runner.invoke(app, ["list-components", "--kind", "nope"])
    assert result.exit_code == 2  # an input error, with or without the traceback
    shown = result.output + capsys.readouterr().err
    assert "Traceback (most recent call last)" in shown and "Error: unknown component kind 'nope'" in shown


def test_the_traceback_is_printed_with_vqvdm_debug_and_only_then():
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "vqvdm_core", "list-components", "--kind", "nope"]
    env = {k: v for k, v in os.environ.items() if k != "VQVDM_DEBUG"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 2 and "unknown component kind 'nope'" in quiet.stderr
    assert "Traceback" not in quiet.stderr + quiet.stdout
    loud = subprocess.run(command, capture_output=True, text=True, env={**env, "VQVDM_DEBUG": "1"}, timeout=120)
    assert loud.returncode == 2 and "Traceback (most recent call last)" in loud.stderr
    assert "unknown component kind 'nope'" in loud.stderr.splitlines()[-1]  # the error follows the traceback


@pytest.mark.parametrize("module", ["vqvdm_core", "vqvdm_core.cli"])
def test_module_entry_point_runs(tmp_path, module):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and __version__ in proc.stdout
    shown = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert "Usage: vqvdm" in shown.stdout  # named as the script is


def test_every_option_of_every_command_has_help():
    import typer.main

    command = typer.main.get_command(app)
    missing = [(name, p.opts) for name, sub in command.commands.items() for p in sub.params
               if getattr(p, "opts", None) and p.opts[0].startswith("-") and not getattr(p, "help", None)]
    assert missing == []


@pytest.mark.parametrize(("words", "expected"), [
    ("vqvdm run r.yaml --stage ", ["tokenizer", "latents", "denoiser", "sample", "evaluate"]),
    ("vqvdm sample RUN --precision ", ["fp32", "bf16", "fp16"]),
    ("vqvdm bench r.yaml --precision ", ["auto", "fp32", "bf16", "fp16"]),
    ("vqvdm sample RUN --sampler dd", ["ddim", "ddpm"]),
    ("vqvdm evaluate RUN --device c", ["cpu", "cuda"]),
    ("vqvdm li", ["list-components"]),
])
def test_the_shell_completes_commands_and_fixed_choices(words, expected):
    import os
    import subprocess
    import sys

    env = {**os.environ, "_VQVDM_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split(" ")) - 1)}
    proc = subprocess.run([sys.executable, "-m", "vqvdm_core"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


def test_show_completion_prints_a_script_for_the_shell():
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0
    assert "_VQVDM_COMPLETE=complete_bash" in result.output and "complete " in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "gpu"], "'gpu' is not a device; use cpu, cuda, cuda:N, mps or auto"),
    (["--precision", "fp64"], "'fp64' is not one of"),
    (["--stage", "tokeniser"], "'tokeniser' is not one of 'tokenizer', 'latents', 'denoiser'"),
])
def test_fixed_choices_are_refused_with_the_choices(tmp_path, standins, args, message):
    path = write_recipe(tmp_path / "ok.yaml", tiny_recipe(output_dir=str(tmp_path / "runs")))
    command = ["bench", str(path)] if args[0] == "--precision" else ["run", str(path)]
    result = runner.invoke(app, [*command, *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "runs").exists()


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
    ("sample", ["--known-guidance", "nan"], "nan is not a finite number"),
    ("sample", ["--known-guidance", "-1"], "-1.0 is negative; give a number >= 0"),
    ("sample", ["--reconstruction-weight", "inf"], "inf is not a finite number"),
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
        proc = subprocess.run([sys.executable, "-m", "vqvdm_core", "list-components", "--kind", "schedule",
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

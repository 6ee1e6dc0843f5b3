"""Missing data folders, split files and weight files are found in a second, before any work:
`vqvdm validate --check-data` lists them, `vqvdm run` refuses to start with them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from standins import tiny_recipe
from typer.testing import CliRunner

from vqvdm_core.cli import app
from vqvdm_core.pipeline.preflight import missing_files
from vqvdm_core.recipe import load_recipe

runner = CliRunner()


@pytest.fixture
def weights_nowhere(tmp_path, monkeypatch):
    """An empty weight cache, no weight variables."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("VQVDM_WEIGHTS_DIR", "VQVDM_I3D_PRETRAINED_400", "VQVDM_C3D_UCF101"):
        monkeypatch.delenv(var, raising=False)


def recipe_with(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(output_dir=str(tmp_path / "runs"), **changes), sort_keys=False))
    return path


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def test_validate_check_data_names_each_missing_folder_split_file_and_weight_file(tmp_path, standins,
                                                                                weights_nowhere):
    ucf = tmp_path / "ucf"
    (ucf / "UCF-101").mkdir(parents=True)
    (ucf / "ucfTrainTestlist").mkdir()
    (ucf / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n")
    path = recipe_with(
        tmp_path,
        data={"train": {"name": "ucf101", "root": str(ucf), "frames": 4, "size": 16},
              "val": {"name": "video_folder", "root": str(tmp_path / "no-such-folder"), "frames": 4, "size": 16}},
        evaluate={"metrics": [{"name": "fvd"}, {"name": "is", "c3d_weights": str(tmp_path / "c3d.pt")}],
                  "num_samples": 4, "steps": 5, "batch_size": 4})
    result = runner.invoke(app, ["validate", "--check-data", str(path)])
    assert result.exit_code == 2
    shown = flat(result.output)
    assert f"data.train (ucf101): UCF-101 split list {ucf / 'ucfTrainTestlist' / 'trainlist01.txt'} does not exist" in shown
    assert f"data.val (video_folder): VideoFolder root {tmp_path / 'no-such-folder'} does not exist" in shown
    assert "evaluate.metrics.0 (fvd): missing weight file 'i3d_pretrained_400.pt'" in shown
    assert f"evaluate.metrics.1 (is): weight file {tmp_path / 'c3d.pt'} does not exist" in shown
    # without --check-data the recipe is valid
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0


def test_validate_check_data_passes_when_everything_is_there(tmp_path, standins):
    (tmp_path / "videos").mkdir()
    path = recipe_with(tmp_path, data={"train": {"name": "video_folder", "root": str(tmp_path / "videos"),
                                                 "frames": 4, "size": 16}})
    result = runner.invoke(app, ["validate", "--check-data", str(path)])
    assert result.exit_code == 0, result.output
    assert "data and weight files found" in result.output


def test_only_the_stages_that_run_are_checked(tmp_path, standins, weights_nowhere):
    path = recipe_with(tmp_path, evaluate={"metrics": [{"name": "fvd"}], "num_samples": 4, "steps": 5,
                                           "batch_size": 4})
    recipe = load_recipe(path)
    assert missing_files(recipe, stages=["tokenizer", "latents", "denoiser"]) == []
    assert [p.split(":")[0] for p in missing_files(recipe, stages=["evaluate"])] == ["evaluate.metrics.0 (fvd)"]


def test_run_refuses_to_start_without_a_file_a_later_stage_needs(tmp_path, standins, weights_nowhere):
    path = recipe_with(tmp_path, evaluate={"metrics": [{"name": "fvd"}], "num_samples": 4, "steps": 5,
                                           "batch_size": 4})
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    shown = flat(result.output)
    assert "would not find what they need; nothing was run" in shown
    assert "evaluate.metrics.0 (fvd): missing weight file 'i3d_pretrained_400.pt'" in shown
    run = tmp_path / "runs" / "tiny"
    assert not (run / "recipe.yaml").exists() and not (run / "tokenizer").exists()
    # the stages that do not need it run
    result = runner.invoke(app, ["run", str(path), "--stage", "tokenizer"])
    assert result.exit_code == 0, result.output

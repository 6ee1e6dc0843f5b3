"""Sizes that could never fit in memory (a typo such as ``num_classes: 1000000000``) are refused
before any work, naming the field that causes them, instead of an out-of-memory error stages later."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vqvdm_core import load_recipe
from vqvdm_core.cli import app
from vqvdm_core.pipeline.model_size import SizeProblem, check_sizes

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"
runner = CliRunner()


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("setting", "named"), [
    ("conditioners.1.num_classes=1000000000", "conditioners.1.num_classes = 1000000000 makes conditioners.1 (class)"),
    ("data.train.num_classes=1000000000", "conditioners.1.num_classes = 1000000000 (not set in the recipe: wired "
                                          "from data.train.num_classes)"),
    ("denoiser.channels=1000000", "denoiser.channels = 1000000 makes denoiser (unet3d)"),
    ("tokenizer.num_codes=10000000000", "tokenizer.num_codes = 10000000000 makes tokenizer (vqgan3d)"),
    ("data.train.size=1000000", "data.train.size = 1000000 makes one batch of 32 training clips"),
])
def test_a_size_that_cannot_fit_is_refused_naming_its_field_before_any_work(tmp_path: Path, setting: str,
                                                                          named: str) -> None:
    runs = tmp_path / "runs"
    mine = runs / "other-run" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("a user's file")
    before = contents(tmp_path)
    result = runner.invoke(app, ["run", str(QUICKSTART), "--set", setting, "--set", f"output_dir={runs}"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"error: {named}" in text and "of memory on" in text and "lower it. Nothing was run." in text
    assert "out of memory" not in text and "Traceback" not in text
    after = contents(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # no existing file changed
    # Nothing but the refused run's log: no recipe, records, checkpoints or weights.
    assert sorted(set(after) - set(before)) == ["runs/quickstart/run.log"]


def test_the_stage_and_memory_are_named_and_a_recipe_that_fits_passes() -> None:
    recipe = load_recipe(QUICKSTART)
    cpu = torch.device("cpu")
    check_sizes(recipe, stages=list(recipe.stages), device=cpu, memory=2**30)  # 1 GiB holds the quickstart
    with pytest.raises(SizeProblem) as refused:
        check_sizes(recipe, stages=["latents", "denoiser"], device=cpu, memory=2**24)
    message = str(refused.value)
    assert "makes denoiser (unet3d)" in message and "the denoiser stage would need at least" in message
    assert "more than the 16.0 MiB of memory on this machine (cpu)" in message
    # Stages that hold no such model are not refused for it.
    check_sizes(recipe, stages=["latents"], device=cpu, memory=2**24)

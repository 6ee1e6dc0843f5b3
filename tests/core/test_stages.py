"""Stage declarations: one ``Stage`` per stage module, everything else derived, hashes unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from vqvdm_core.pipeline import MAIN_PROCESS_STAGES, STAGE_FUNCTIONS
from vqvdm_core.pipeline.preflight import TRAINED_BY, USED_BY
from vqvdm_core.pipeline.run_dir import STAGE_HASH_PATHS, UPSTREAM, RunDir, stage_hash
from vqvdm_core.pipeline.stages import BY_NAME, ORDER
from vqvdm_core.recipe import STAGES, StageName, load_recipe

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"

# recipes/quickstart.yaml as it was when the hashes below were measured (before the stage
# declarations were introduced; issue 20 then shortened its training): the current file with these
# overrides is that recipe, field for field.
BEFORE_ISSUE_20 = ["train.tokenizer.steps=1300", "train.tokenizer.val_every=1300", "train.denoiser.steps=750",
                   "train.denoiser.val_every=750", "train.denoiser.ema_decay=0.995",
                   "schedule.train_timesteps=uniform", "schedule.log_snr_mean=0.0", "schedule.log_snr_std=2.0",
                   "schedule.uniform_share=0.0"]

# The hashes of that recipe's stages: a change here orphans every existing run directory.
QUICKSTART_HASHES = {
    "tokenizer": "513ebba1816fbe98",
    "latents": "bfc744b1ba1474cd",
    "denoiser": "42a25eb7e522b1c3",
    "sample": "0a3296d7e744dd27",
    "evaluate": "d27869a4d105863b",
}


def test_stage_hashes_of_quickstart_are_unchanged(tmp_path):
    recipe = load_recipe(QUICKSTART, BEFORE_ISSUE_20)
    assert {s: stage_hash(recipe, s) for s in STAGES} == QUICKSTART_HASHES
    run = RunDir(recipe, tmp_path)
    assert {s: run.stage_hash(s) for s in STAGES} == QUICKSTART_HASHES


def test_a_recipe_without_guidance_keeps_the_hashes_it_had_when_the_default_was_the_none_node():
    data = load_recipe(QUICKSTART, BEFORE_ISSUE_20).dump()
    del data["guidance"]  # measured with the code of 9751bf3, where the default was {name: none}
    before = {"tokenizer": "513ebba1816fbe98", "latents": "bfc744b1ba1474cd", "denoiser": "42a25eb7e522b1c3",
              "sample": "4aad70949d5d78d9", "evaluate": "68a857d5952f792f"}
    assert {s: stage_hash(load_recipe(data), s) for s in STAGES} == before
    assert {s: stage_hash(load_recipe({**data, "guidance": "none"}), s) for s in STAGES} == before


def test_recipe_stage_names_agree_with_the_declarations():
    names = tuple(s.name for s in ORDER)
    assert names == STAGES == get_args(StageName)
    assert set(BY_NAME) == set(names)
    for i, stage in enumerate(ORDER):  # every upstream stage runs earlier
        assert stage.upstream is None or stage.upstream in names[:i]
        assert stage.module.endswith(f".stages.{stage.name}")


def test_derived_tables():
    assert STAGE_HASH_PATHS["evaluate"] == ("evaluate", "guidance", "data.val", "sample.fps")
    assert UPSTREAM == {"tokenizer": None, "latents": "tokenizer", "denoiser": "latents", "sample": "denoiser",
                        "evaluate": "denoiser"}
    assert MAIN_PROCESS_STAGES == {"latents", "sample", "evaluate"}
    assert set(STAGE_FUNCTIONS) == set(STAGES)
    assert USED_BY == {
        "data.train": {"tokenizer", "latents", "evaluate"},
        "data.val": {"tokenizer", "denoiser", "evaluate"},
        "train.tokenizer": {"tokenizer"},
        "train.denoiser": {"denoiser"},
        "sample": {"sample"},
        "evaluate": {"evaluate"},
    }
    assert TRAINED_BY == {"tokenizer": "tokenizer", "denoiser": "denoiser"}


def test_stage_hash_is_computed_once_per_run_dir(tmp_path, monkeypatch):
    recipe = load_recipe(QUICKSTART)
    run = RunDir(recipe, tmp_path)
    calls: list[tuple[str, ...]] = []
    original = type(recipe).hash

    def counting(self, *paths):
        calls.append(paths)
        return original(self, *paths)

    monkeypatch.setattr(type(recipe), "hash", counting)
    for _ in range(3):
        for s in STAGES:
            run.stage_hash(s)
    assert len(calls) == len(STAGES)

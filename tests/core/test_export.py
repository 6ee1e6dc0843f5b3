"""Exported pipelines: ``vqvdm export RUN OUT_DIR``, ``LatentVideoDiffusion.from_pretrained`` and
``vqvdm sample OUT_DIR``, on a tiny run of the stand-in components."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console
from standins import tiny_recipe
from typer.testing import CliRunner

from vqvdm_core import ComponentError, __version__, load_recipe
from vqvdm_core.cli import app
from vqvdm_core.pipeline import open_run, run_recipe
from vqvdm_core.registry import Registry
from vqvdm_core.system import LatentVideoDiffusion
from vqvdm_core.system.pretrained import FORMAT_VERSION, INDEX_FILE, PretrainedFolderError

runner = CliRunner()


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, module_standins):
    """A whole tiny run (every stage, evaluate included), shared read-only by this module."""
    root = tmp_path_factory.mktemp("export") / "runs"
    ctx = run_recipe(load_recipe(tiny_recipe(output_dir=str(root))), console=quiet())
    return ctx.run.path


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run exported through the CLI, shared read-only by this module."""
    out = tmp_path_factory.mktemp("pipelines") / "tiny-pipeline"
    result = runner.invoke(app, ["export", str(tiny_run), str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def pipeline_copy(exported, tmp_path, standins):
    """A private copy of the exported folder (for tests that damage it)."""
    return Path(shutil.copytree(exported, tmp_path / "copy"))


def test_export_writes_every_component_config_weights_and_an_index(exported, tiny_run):
    index = json.loads((exported / INDEX_FILE).read_text())
    assert index["format_version"] == FORMAT_VERSION and index["vqvdm_version"] == __version__
    on_disk = snapshot(exported)
    on_disk.pop(INDEX_FILE)
    # The index lists every other file with its sha256 and size.
    assert set(index["files"]) == set(on_disk)
    for name, data in on_disk.items():
        assert index["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    components = index["components"]
    assert {k: components[k]["name"] for k in ("tokenizer", "denoiser", "schedule", "guidance", "sampler")} == {
        "tokenizer": "tiny_tokenizer", "denoiser": "tiny_denoiser", "schedule": "ddpm", "guidance": "cfg",
        "sampler": "ddpm"}
    assert [c["name"] for c in components["conditioners"]] == ["fps", "class"]
    for name in ("tokenizer/weights.safetensors", "denoiser/weights.safetensors", "schedule/config.json",
                 "conditioners/1/weights.safetensors", "README.md", "recipe.yaml", "metrics.json"):
        assert name in on_disk, name
    # Resolved configs: wired fields are filled in.
    denoiser = json.loads((exported / "denoiser" / "config.json").read_text())
    assert denoiser == {"name": "tiny_denoiser", "in_channels": 2, "emb_dim": 16}
    label = json.loads((exported / "conditioners" / "1" / "config.json").read_text())
    assert label["name"] == "class" and label["num_classes"] == 2 and label["dropout"] == 0.5
    system = json.loads((exported / "system.json").read_text())
    meta = json.loads((tiny_run / "latents" / "stage.json").read_text())["info"]
    assert system["clip_shape"] == [4, 8, 8]
    assert system["latent_scale"] == float(torch.tensor(meta["scale"], dtype=torch.float32))
    assert system["data"] == {"num_classes": 2, "class_names": ["c0", "c1"], "fps_values": [8.0]}
    assert system["sample"]["steps"] == 5 and "sampler" not in system["sample"]
    assert (exported / "recipe.yaml").read_bytes() == (tiny_run / "recipe.yaml").read_bytes()
    card = (exported / "README.md").read_text()
    for expected in ("# tiny", "`tiny_clips`", "0: c0, 1: c1", "mean_brightness/mean",
                     "LatentVideoDiffusion.from_pretrained", "vqvdm sample", "upload_folder"):
        assert expected in card, expected


def test_from_pretrained_samples_the_same_clips_as_the_run(exported, tiny_run, standins):
    from vqvdm_core.pipeline.conditions import grid
    from vqvdm_core.pipeline.generate import generate

    ctx = open_run(tiny_run, console=quiet())
    from_run = ctx.system(trained=True)
    loaded = LatentVideoDiffusion.from_pretrained(exported)
    assert loaded.data_info["class_names"] == ["c0", "c1"] and loaded.sample_settings["steps"] == 5
    assert loaded.state_dict().keys() == from_run.state_dict().keys()
    for key, value in from_run.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    conditions = grid(ctx.latents_meta(), labels="all", fps=None, per_condition=2)

    def clips(system, sampler, guidance):
        return torch.cat([v for _, v in generate(
            system, conditions, batch_size=3, steps=ctx.recipe.sample.steps, sampler=sampler,
            guidance_scale=guidance, seed=7, device=torch.device("cpu"), precision="fp32", console=quiet())])

    # The run's default sampler (the recipe's) and the pipeline's stored one give identical bits.
    expected = clips(from_run, from_run.resolve_sampler(ctx.recipe.sample.sampler), None)
    assert torch.equal(clips(loaded, loaded.resolve_sampler(None), None), expected)
    assert torch.equal(clips(loaded, "ddim", 3.0), clips(from_run, "ddim", 3.0))
    # And through system.sample with a generator.
    direct = [system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3,
                            sampler=None if system is loaded else ctx.recipe.sample.sampler,
                            generator=torch.Generator().manual_seed(3)) for system in (from_run, loaded)]
    assert torch.equal(direct[0], direct[1])


def test_sample_command_on_a_pipeline_folder_matches_the_run(exported, tiny_run, tmp_path, standins):
    from vqvdm_core.pipeline.samples_file import load_samples

    args = ["--label", "1", "--fps", "8", "--num", "2", "--steps", "3", "--seed", "5"]
    written = {}
    for name, source in (("run", tiny_run), ("pipeline", exported)):
        out = tmp_path / f"{name}.mp4"
        result = runner.invoke(app, ["sample", str(source), *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 0 and out.with_suffix(".gif").stat().st_size > 0
        written[name] = load_samples(out.with_suffix(".safetensors"))
    video, labels, fps = written["pipeline"]
    assert video.shape == (2, 3, 4, 8, 8) and labels.tolist() == [1, 1] and fps.tolist() == [8.0, 8.0]
    assert torch.equal(video, written["run"][0])
    # Options work as on a run: another sampler and guidance scale.
    out = tmp_path / "ddim.gif"
    result = runner.invoke(app, ["sample", str(exported), "--sampler", "ddim", "--guidance", "3", "--steps", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_samples(out.with_suffix(".safetensors"))[1].tolist() == [0, 1]  # every class by default


def test_a_changed_weight_file_is_refused_naming_it(pipeline_copy, tmp_path):
    weights = pipeline_copy / "denoiser" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(PretrainedFolderError, match=r"denoiser/weights\.safetensors does not match its sha256"):
        LatentVideoDiffusion.from_pretrained(pipeline_copy)
    result = runner.invoke(app, ["sample", str(pipeline_copy), "--out", str(tmp_path / "s.mp4")])
    assert result.exit_code == 2
    assert "denoiser/weights.safetensors does not match its sha256" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s.mp4").exists()


def test_a_missing_file_is_refused_naming_it(pipeline_copy):
    (pipeline_copy / "conditioners" / "1" / "config.json").unlink()
    with pytest.raises(PretrainedFolderError) as caught:
        LatentVideoDiffusion.from_pretrained(pipeline_copy)
    message = str(caught.value)
    assert "conditioners/1/config.json is missing" in message and message.count("\n") == 0
    shutil.rmtree(pipeline_copy / "tokenizer")
    with pytest.raises(PretrainedFolderError, match=r"tokenizer/config\.json is missing; tokenizer/weights"):
        LatentVideoDiffusion.from_pretrained(pipeline_copy)


def test_another_format_version_is_refused(pipeline_copy):
    index_path = pipeline_copy / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["format_version"] = FORMAT_VERSION + 1
    index_path.write_text(json.dumps(index))
    with pytest.raises(PretrainedFolderError, match=rf"{INDEX_FILE}: pipeline format version 2 .*upgrade vqvdm"):
        LatentVideoDiffusion.from_pretrained(pipeline_copy)
    index_path.unlink()
    with pytest.raises(PretrainedFolderError, match=f"not an exported vqvdm pipeline: it has no {INDEX_FILE}"):
        LatentVideoDiffusion.from_pretrained(pipeline_copy)


def test_an_index_naming_a_file_outside_the_folder_is_refused(pipeline_copy):
    index_path = pipeline_copy / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["files"]["../secret"] = {"sha256": "0" * 64, "bytes": 1}
    index_path.write_text(json.dumps(index))
    with pytest.raises(PretrainedFolderError, match=r"outside the folder.*\.\./secret"):
        LatentVideoDiffusion.from_pretrained(pipeline_copy)


def test_a_missing_plugin_gives_the_registry_error(exported):
    empty = Registry(entry_points=lambda group: [])
    with pytest.raises(ComponentError, match=r"the tokenizer is the tokenizer 'tiny_tokenizer' \(registered in-process.*unknown tokenizer "
                                             r"'tiny_tokenizer'.*Install the plug-in"):
        LatentVideoDiffusion.from_pretrained(exported, registry=empty)


def test_save_pretrained_of_a_loaded_system_writes_the_same_component_files(exported, tmp_path, standins):
    again = LatentVideoDiffusion.from_pretrained(exported).save_pretrained(tmp_path / "again")
    original, resaved = snapshot(exported), snapshot(again)
    assert set(resaved) == {n for n in original if n not in ("README.md", "recipe.yaml", "metrics.json")}
    for name in resaved:
        if name != INDEX_FILE:
            assert resaved[name] == original[name], name


def test_a_non_empty_out_dir_is_refused_and_left_unchanged(tiny_run, exported, tmp_path, standins):
    out = tmp_path / "taken"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "keep.txt").write_text("mine")
    before = snapshot(out)
    for extra in ([], ["--force"]):  # --force replaces only a pipeline folder
        result = runner.invoke(app, ["export", str(tiny_run), str(out), *extra])
        assert result.exit_code == 2, result.output
        assert "not empty" in result.output and "Traceback" not in result.output
        assert snapshot(out) == before
    # An earlier export is replaced with --force (and only then).
    target = Path(shutil.copytree(exported, tmp_path / "previous"))
    (target / "stale.txt").write_text("old")
    assert runner.invoke(app, ["export", str(tiny_run), str(target)]).exit_code == 2
    result = runner.invoke(app, ["export", str(tiny_run), str(target), "--force"])
    assert result.exit_code == 0, result.output
    assert not (target / "stale.txt").exists() and (target / INDEX_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_run_with_an_unfinished_stage_is_refused(tiny_run, tmp_path, standins):
    run = Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name))
    record_path = run / "denoiser" / "stage.json"
    record = json.loads(record_path.read_text())
    record["status"] = "running"
    record_path.write_text(json.dumps(record))
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 2
    assert "cannot export" in result.output and "stage 'denoiser' has not finished" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_context_from_the_data_needs_a_run(exported, tmp_path, standins):
    result = runner.invoke(app, ["sample", str(exported), "--context", "train:0", "--out", str(tmp_path / "c.mp4")])
    assert result.exit_code == 2
    assert "an exported pipeline has no data set" in result.output


def test_vqgan3d_pipeline_needs_no_loss_networks(tmp_path, standins):
    """The paper's tokenizer is stored without LPIPS and discriminator: a folder loads without VGG16."""
    from vqvdm_core.registry import REGISTRY, create

    tiny = dict(channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1, norm_groups=4, num_codes=32,
                perceptual_pretrained=False, perceptual_weight=1.0)
    with pytest.warns(UserWarning, match="RANDOM VGG16"):
        tokenizer = create("tokenizer", "vqgan3d", **tiny)
    assert any(k.startswith("discriminator.") for k in tokenizer.state_dict())
    denoiser = create("denoiser", "tiny_denoiser", in_channels=4)
    system = LatentVideoDiffusion(tokenizer=tokenizer, denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  clip_shape=(4, 8, 8), registry=REGISTRY)
    folder = system.save_pretrained(tmp_path / "vq")
    config = json.loads((folder / "tokenizer" / "config.json").read_text())
    assert config["perceptual_weight"] == 0 and config["adversarial_weight"] == 0
    loaded = LatentVideoDiffusion.from_pretrained(folder)
    assert loaded.tokenizer.discriminator is None and not loaded.tokenizer._perceptual
    video = torch.rand(1, 3, 4, 8, 8) * 2 - 1
    assert torch.equal(loaded.tokenizer.decode(loaded.tokenizer.encode(video)),
                       tokenizer.eval().decode(tokenizer.encode(video)))

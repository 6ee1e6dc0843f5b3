"""The paper's recipes, as shipped, through every stage: tokenizer -> latents -> denoiser -> sample
-> evaluate, on stand-in data sets in the real layouts, with tiny widths and two steps per stage.

Only sizes are overridden (data root, clip size, widths, steps, sample counts, the metric networks'
files and resolution), plus fp32 training on this CPU and, for Sky only, an early GAN switch-on so
the discriminator trains through the pipeline once. Everything else - factors, latent channels,
loss weights, the UCF-101 discriminator start, the conditioners, the guidance, the metric protocol -
is the paper's, and the resolved ``recipe.yaml`` of each run is checked to still say so.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from vqvdm_core.cli import app

pytestmark = [
    pytest.mark.slow,
    # Expected here: LPIPS has no ImageNet file offline, and the Sky stand-in has one too-short clip.
    pytest.mark.filterwarnings("ignore:LPIPS perceptual loss with a RANDOM VGG16"),
    pytest.mark.filterwarnings("ignore:SkyTimelapse. skipped 1 of 4 videos"),
]

RECIPES = Path(__file__).parents[2] / "recipes"
STAGES = ["tokenizer", "latents", "denoiser", "sample", "evaluate"]
TRAIN_STEPS = 2
EVAL_SAMPLES = 4
CLIP = (16, 32, 32)  # frames, height, width of the tiny runs


def tiny_overrides(kind: str, *, data_root: Path, output_dir: Path, i3d: Path, c3d: Path) -> list[str]:
    """``--set`` overrides that shrink a paper recipe to CPU seconds without touching its settings.

    The tokenizer keeps 4x temporal and 8x spatial compression to 4 channels (a 16x32x32 clip gives
    a 4x4x4x4 latent); only widths, codebook size and the LPIPS backbone (no ImageNet file here)
    change. Training keeps its optimizers and losses; steps, batches and workers shrink.
    """
    sets = [
        f"output_dir={output_dir}",
        f"data.train.root={data_root}", f"data.val.root={data_root}",
        f"data.train.size={CLIP[1]}", f"data.val.size={CLIP[1]}",
        # Tokenizer: narrow, but the paper's factors, latent channels, losses and their weights.
        "tokenizer.channels=8", "tokenizer.channel_mults=[1,1,1,1]", "tokenizer.num_res_blocks=1",
        "tokenizer.num_codes=64", "tokenizer.perceptual_pretrained=false", "tokenizer.perceptual_frames=2",
        "tokenizer.disc_channels=8", "tokenizer.disc_layers=2",
        # Denoiser: narrow, with the paper's levels, causal temporal attention and epsilon target.
        "denoiser.channels=8", "denoiser.num_res_blocks=1",
    ]
    for stage in ("tokenizer", "denoiser"):
        sets += [f"train.{stage}.steps={TRAIN_STEPS}", f"train.{stage}.batch_size=2",
                 f"train.{stage}.num_workers=0", f"train.{stage}.val_clips=2",
                 f"train.{stage}.log_every=1",
                 # bf16 (the recipes' GPU setting) is emulated on CPUs without bfloat16 units:
                 # convolutions ran 8-150x slower than in fp32 on the test machine.
                 f"train.{stage}.precision=fp32"]
    sets += [
        "train.tokenizer.val_metrics.0.lpips_pretrained=false",
        "latents.epochs=1", "latents.batch_size=4", "latents.num_workers=0",
        "sample.steps=2", "sample.per_condition=1" if kind == "ucf101" else "sample.per_condition=2",
        f"evaluate.num_samples={EVAL_SAMPLES}", "evaluate.batch_size=4", "evaluate.steps=2",
    ]
    metrics = ["is", "fvd", "kvd"] if kind == "ucf101" else ["fvd", "kvd"]
    for i, name in enumerate(metrics):
        if name == "is":
            sets += [f"evaluate.metrics.{i}.c3d_weights={c3d}", f"evaluate.metrics.{i}.num_splits=2"]
        else:  # I3D at 16x16 frames: its SAME-padded trunk takes any size; 224 costs 200x more
            sets += [f"evaluate.metrics.{i}.i3d_weights={i3d}", f"evaluate.metrics.{i}.resolution=16"]
    return sets


@dataclass
class PaperRun:
    kind: str
    path: Path
    recipe: dict


def run_paper_recipe(kind: str, data_root: Path, tmp: Path, i3d: Path, c3d: Path) -> PaperRun:
    recipe_file = RECIPES / f"vqvdm_{kind}.yaml"
    overrides = tiny_overrides(kind, data_root=data_root, output_dir=tmp / "runs", i3d=i3d, c3d=c3d)
    if kind == "sky":
        # Switch the GAN on at the second step so the discriminator is trained through the pipeline too.
        overrides.append("tokenizer.discriminator_start=1")
    args = ["run", str(recipe_file), "--device", "cpu"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    name = yaml.safe_load(recipe_file.read_text())["name"]
    path = tmp / "runs" / name
    return PaperRun(kind, path, yaml.safe_load((path / "recipe.yaml").read_text()))


@pytest.fixture(scope="module", params=["ucf101", "sky"])
def paper_run(request, tmp_path_factory, ucf101_root, sky_root, i3d_state_dict_file,
              c3d_torchscript_file) -> PaperRun:
    kind = request.param
    root = ucf101_root if kind == "ucf101" else sky_root
    return run_paper_recipe(kind, root, tmp_path_factory.mktemp(f"paper_{kind}"), i3d_state_dict_file,
                            c3d_torchscript_file)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# Every stage ran and wrote well-formed outputs
# --------------------------------------------------------------------------------------------


def test_every_stage_of_the_paper_recipe_is_done(paper_run):
    for stage in STAGES:
        record = json.loads((paper_run.path / stage / "stage.json").read_text())
        assert record["status"] == "done", stage
    assert (paper_run.path / "report.html").is_file()


def test_tokenizer_stage_trained_the_vqgan_and_exported_finite_weights(paper_run):
    out = paper_run.path / "tokenizer"
    info = json.loads((out / "stage.json").read_text())["info"]
    assert info["trained"] is True and info["steps"] == TRAIN_STEPS
    weights = load_file(str(out / "tokenizer.safetensors"))
    assert any(k.startswith("encoder.") for k in weights) and any(k.startswith("decoder.") for k in weights)
    assert any(k.startswith("quantizer.") for k in weights)
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("tag") == "train"]
    assert [r["step"] for r in train] == list(range(1, TRAIN_STEPS + 1))
    assert all(finite(v) for r in train for v in r.values() if not isinstance(v, str))
    # The engine logs each optimizer group's loss and gradient norm.
    if paper_run.kind == "ucf101":  # the paper's 10,000-step switch-on: no GAN terms in two steps
        assert all(r["loss/discriminator"] == 0 and r["grad_norm/discriminator"] == 0 for r in train)
    else:  # switched on at step 1 (the second step): the discriminator trained
        assert train[0]["loss/discriminator"] == 0
        assert train[1]["loss/discriminator"] > 0 and train[1]["grad_norm/discriminator"] > 0
    assert list((out / "val").glob("recon_step*.mp4")) and list((out / "val").glob("recon_step*.gif"))


def test_latents_stage_cached_the_paper_latent_shape(paper_run):
    out = paper_run.path / "latents"
    info = json.loads((out / "stage.json").read_text())["info"]
    # 4 channels, time / 4, space / 8: the paper's 4x4x16x16 latent at 16x128x128, here at 16x32x32.
    expected = [4, CLIP[0] // 4, CLIP[1] // 8, CLIP[2] // 8]
    assert info["latent_shape"] == expected and info["clip_shape"] == list(CLIP)
    data = load_file(str(out / "latents.safetensors"))
    assert list(data["latent"].shape[1:]) == expected and data["latent"].shape[0] == info["count"]
    assert torch.isfinite(data["latent"]).all()
    assert info["scale"] == pytest.approx(1.0 / float(data["latent"].std()), rel=1e-4)
    if paper_run.kind == "ucf101":
        assert info["num_classes"] == 3 and info["fps_values"] == [25.0]
        assert info["count"] == 6  # the train list's videos (2 per class), not the test list's
        assert sorted(set(data["label"].tolist())) == [0, 1, 2]
    else:
        assert info["num_classes"] == 0
        assert info["count"] == 3  # the 9-frame clip is too short for 16 frames


def test_denoiser_stage_exported_finite_ema_weights(paper_run):
    out = paper_run.path / "denoiser"
    info = json.loads((out / "stage.json").read_text())["info"]
    assert info["steps"] == TRAIN_STEPS
    weights = load_file(str(out / "denoiser.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert list((out / "val").glob("samples_step*.gif"))


def test_sample_stage_wrote_a_grid_per_condition(paper_run):
    import av
    from PIL import Image

    out = paper_run.path / "sample"
    with av.open(str(out / "grid.mp4")) as container:  # decodes, with one frame per clip frame
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # UCF-101: one row per class (3 x 1); Sky: one row of per_condition = 2 clips.
    rows, cols = (3, 1) if paper_run.kind == "ucf101" else (1, 2)
    assert len(frames) == CLIP[0]
    assert frames[0].shape[0] >= rows * CLIP[1] and frames[0].shape[1] >= cols * CLIP[2]
    with Image.open(out / "grid.gif") as gif:
        assert gif.n_frames == CLIP[0]
        assert gif.size[1] >= rows * CLIP[1] and gif.size[0] >= cols * CLIP[2]
    conditions = json.loads((out / "conditions.json").read_text())
    if paper_run.kind == "ucf101":
        assert conditions["labels"] == [0, 1, 2] and conditions["fps"] == [25.0] * 3
    else:
        assert conditions["labels"] == [-1, -1] and conditions["fps"] == [25.0] * 2


def test_evaluate_stage_wrote_finite_metrics_with_their_protocol(paper_run):
    report = json.loads((paper_run.path / "evaluate" / "metrics.json").read_text())
    (result,) = report["results"]
    assert result["num_samples"] == EVAL_SAMPLES and result["steps"] == 2
    values = result["values"]
    expected = {"is", "fvd", "kvd"} if paper_run.kind == "ucf101" else {"fvd", "kvd"}
    assert set(values) == expected and set(report["protocol"]) == expected
    # The stand-in I3D gives clip-dependent features: untrained samples are far from the real clips.
    assert finite(values["fvd"]["fvd"]) and values["fvd"]["fvd"] > 0
    assert finite(values["kvd"]["kvd"]) and finite(values["kvd"]["kvd_std"])
    assert values["fvd"]["num_fake"] == EVAL_SAMPLES
    real_clips = 3 if paper_run.kind == "ucf101" else 2  # the test list / sky_test clips
    assert values["fvd"]["num_real"] == real_clips
    if "is" in values:
        # IS of a split lies in [1, clips in the split]: 2 splits of 4 clips.
        assert finite(values["is"]["is"]) and 1.0 - 1e-9 <= values["is"]["is"] <= EVAL_SAMPLES / 2 + 1e-9
        assert values["is"]["num_samples"] == EVAL_SAMPLES
    assert report["real_set"] == "val"


def test_report_page_shows_every_stage_output(paper_run):
    page = (paper_run.path / "report.html").read_text()
    sources = [html.unescape(s) for s in re.findall(r'(?:src|href)="([^"]+)"', page)]  # pictures and links
    assert {"sample/grid.gif", "sample/grid.mp4", "tokenizer/loss_curves.png", "denoiser/loss_curves.png"} \
        <= set(sources)
    assert any(s.startswith("tokenizer/val/recon_step") and s.endswith(".mp4") for s in sources)
    assert any(s.startswith("report_files/tokenizer/recon_step") for s in sources)  # input/reconstruction strips
    assert any(s.startswith("denoiser/val/samples_step") for s in sources)
    assert all((paper_run.path / s).is_file() for s in sources)  # relative links that resolve
    # Each sample is shown on its own, the 32x32 clips enlarged by a whole factor, never resampled.
    from PIL import Image

    cells = re.findall(r'<img src="(report_files/sample/clip_\d+\.gif)"[^>]*width="(\d+)" height="(\d+)" '
                       r"class='pixel'", page)
    assert len(cells) == len(json.loads((paper_run.path / "sample" / "conditions.json").read_text())["labels"])
    for src, width, height in cells:
        with Image.open(paper_run.path / src) as image:
            assert image.size == CLIP[:0:-1]
        zoom = int(width) // CLIP[2]
        assert zoom >= 2 and (int(width), int(height)) == (zoom * CLIP[2], zoom * CLIP[1])
    report = json.loads((paper_run.path / "evaluate" / "metrics.json").read_text())
    for name, values in report["results"][0]["values"].items():
        assert f"<td>{name}</td><td>{values[name]:.4g}</td>" in page
    for component in ("vqgan3d", "unet3d", "ddpm"):
        assert f"<td>{component}</td>" in page
    assert page.count("<td>done</td>") == len(STAGES)


# --------------------------------------------------------------------------------------------
# The resolved recipe still carries the paper's settings
# --------------------------------------------------------------------------------------------


def test_resolved_recipe_keeps_the_papers_tokenizer_settings(paper_run):
    tok = paper_run.recipe["tokenizer"]
    assert tok["name"] == "vqgan3d"
    assert (tok["latent_channels"], tok["temporal_factor"], tok["spatial_factor"]) == (4, 4, 8)
    assert tok["spatial_padding"] == "replicate"
    assert tok["beta"] == 0.25
    assert (tok["l2_weight"], tok["perceptual_weight"]) == (1.0, 1.0)
    # (lambda1, lambda2, lambda3) of Eq. 5
    assert (tok["vq_weight"], tok["adversarial_weight"], tok["feature_matching_weight"]) == (1.0, 0.5, 1.0)
    assert tok["gan_loss"] == "bce"
    if paper_run.kind == "ucf101":
        assert tok["discriminator_start"] == 10000  # not overridden for UCF-101


def test_resolved_recipe_keeps_the_papers_data_and_diffusion_settings(paper_run):
    r = paper_run.recipe
    assert r["data"]["train"]["frames"] == 16 and r["data"]["val"]["random_clip"] is False
    assert r["data"]["train"]["split"] == "train" and r["data"]["val"]["split"] == "test"
    assert r["denoiser"]["name"] == "unet3d" and r["denoiser"]["prediction_type"] == "epsilon"
    assert r["denoiser"]["temporal_position"] == "rope"
    assert r["schedule"]["name"] == "ddpm" and r["schedule"]["num_train_steps"] == 1000
    assert r["schedule"]["beta_schedule"] == "linear"
    if paper_run.kind == "ucf101":
        assert r["data"]["train"]["name"] == "ucf101" and r["data"]["train"]["fold"] == 1
        by_name = {c["name"]: c for c in r["conditioners"]}
        assert list(by_name) == ["fps", "class"]
        assert by_name["class"]["dropout"] == 0.5  # rho = 0.5
        assert r["guidance"]["name"] == "cfg"
    else:
        assert r["data"]["train"]["name"] == "sky_timelapse"
        assert r["conditioners"] == []  # unconditional: rho = 1
        assert r["guidance"]["name"] == "none"


def test_resolved_recipe_keeps_the_papers_metric_protocol(paper_run):
    ev = paper_run.recipe["evaluate"]
    by_name = {m["name"]: m for m in ev["metrics"]}
    for name in ("fvd", "kvd"):
        m = by_name[name]
        assert (m["max_real"], m["max_fake"]) == (2048, 2048)
        assert m["num_frames"] == 16 and m["i3d_format"] == "state_dict"
        assert m["value_range"] == "symmetric" and m["spatial"] == "resize"
    if paper_run.kind == "ucf101":
        assert by_name["is"]["max_samples"] == 10000 and by_name["is"]["c3d_format"] == "torchscript"
        assert by_name["is"]["num_frames"] == 16
    else:
        assert "is" not in by_name
    assert ev["real"] == "val"


# --------------------------------------------------------------------------------------------
# As shipped
# --------------------------------------------------------------------------------------------


def test_both_paper_recipes_validate_as_shipped():
    files = [RECIPES / "vqvdm_ucf101.yaml", RECIPES / "vqvdm_sky.yaml"]
    result = CliRunner().invoke(app, ["validate", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert result.output.count("valid") == 2

"""The ``flow`` and ``edm`` objectives in everything that takes a schedule: a recipe run through every
stage (with the ``latent_fd`` metric), export and ``from_pretrained``, every sampler, long videos and
continuations, the training loss and its weighting."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from standins import tiny_recipe
from test_system import CLIP, PoolTokenizer, randomize
from typer.testing import CliRunner

from vqvdm_core import create, load_recipe
from vqvdm_core.cli import app
from vqvdm_core.interfaces.sampler import SamplingChain
from vqvdm_core.pipeline import run_recipe
from vqvdm_core.system import LatentVideoDiffusion
from vqvdm_core.system.long_video import condition_on_known

DIT = {"name": "dit3d", "width": 16, "depth": 2, "heads": 2, "patch_size": 2, "known_frames": 0.5}
SAMPLERS = ["ddpm", "ddim", "dpmpp_2m", "unipc", "euler", "heun"]


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


def system_on(schedule: dict, prediction_type: str, **changes) -> LatentVideoDiffusion:
    torch.manual_seed(0)
    denoiser = create("denoiser", "dit3d", in_channels=3, prediction_type=prediction_type,
                      **{"width": 16, "depth": 2, "heads": 2, "patch_size": 2, **changes})
    conditioners = [create("conditioner", "fps", emb_dim=denoiser.emb_dim),
                    create("conditioner", "class", emb_dim=denoiser.emb_dim, num_classes=3, dropout=0.5)]
    system = LatentVideoDiffusion(tokenizer=PoolTokenizer(), denoiser=denoiser,
                                  schedule=create("schedule", schedule["name"],
                                                  **{k: v for k, v in schedule.items() if k != "name"}),
                                  conditioners=conditioners,
                                  guidance=create("guidance", "cfg"), clip_shape=CLIP)
    randomize(system.denoiser)
    return system


@pytest.mark.parametrize("schedule, prediction_type, sampler", [
    ({"name": "flow", "shift": 3.0, "train_time": "logit_normal"}, "velocity", "euler"),
    ({"name": "edm"}, "x0", "heun")])
def test_a_recipe_trains_samples_evaluates_and_exports_on_another_path(tmp_path, standins, schedule,
                                                                          prediction_type, sampler):
    recipe = load_recipe(tiny_recipe(
        output_dir=str(tmp_path / "runs"), denoiser={**DIT, "prediction_type": prediction_type}, schedule=schedule,
        sample={"steps": 3, "fps": [8.0], "batch_size": 4, "sampler": sampler},
        evaluate={"metrics": [{"name": "mean_brightness"}, {"name": "latent_fd", "min_clips": 4}],
                  "num_samples": 4, "steps": 3, "batch_size": 2, "sampler": sampler, "guidance_scales": [2.0]}))
    ctx = run_recipe(recipe, console=quiet())
    run = ctx.run.path
    report = json.loads((run / "evaluate" / "metrics.json").read_text())
    [result] = report["results"]
    assert result["values"]["latent_fd"]["latent_fd"] >= 0.0 and result["denoiser_calls"] == (
        5 if sampler == "heun" else 3)
    assert "spatial std" in report["protocol"]["latent_fd"]["features"]
    out = tmp_path / "pipeline"
    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    from_run, loaded = ctx.system(trained=True), LatentVideoDiffusion.from_pretrained(out)
    assert type(loaded.schedule).__name__ == type(from_run.schedule).__name__
    assert loaded.schedule.config == from_run.schedule.config
    clips = [system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler=sampler,
                           generator=torch.Generator().manual_seed(3)) for system in (from_run, loaded)]
    assert torch.equal(clips[0], clips[1]) and torch.isfinite(clips[0]).all()


@pytest.mark.parametrize("schedule, prediction_type", [({"name": "flow"}, "velocity"), ({"name": "edm"}, "x0"),
                                                       ({"name": "edm", "precondition": False}, "epsilon")])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_on_every_path_and_is_reproducible(schedule, prediction_type, sampler):
    system = system_on(schedule, prediction_type)
    kwargs = dict(labels=[0, 2], fps=[4.0, 8.0], steps=3, sampler=sampler, decode=False)
    a = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    b = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    assert a.shape == (2, 3, 4, 4, 4) and torch.isfinite(a).all() and torch.equal(a, b)


@pytest.mark.parametrize("schedule, prediction_type", [({"name": "flow", "shift": 2.0}, "velocity"),
                                                       ({"name": "edm"}, "x0")])
@pytest.mark.parametrize("method", ["replacement", "reconstruction"])
def test_continuations_and_long_videos_on_another_path_keep_the_given_frames(schedule, prediction_type, method):
    system = system_on(schedule, prediction_type, known_frames=0.5)
    context = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    video = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler="euler", context=context, frames=6,
                          known_frames=method, generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 6, 8, 8) and torch.equal(video[:, :, :2], context) and torch.isfinite(video).all()
    long = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler="euler", frames=12, decode=False,
                         known_frames=method, generator=torch.Generator().manual_seed(0))
    assert long.shape == (2, 3, 12, 4, 4) and torch.isfinite(long).all()


def test_known_frames_are_noised_with_the_paths_own_scales():
    chain = create("schedule", "flow").chain(4, spacing="trailing")  # t = 1, 0.75, 0.5, 0.25: alpha = 1 - t
    known = torch.full((1, 1, 2, 1, 1), 3.0)
    seen = []

    def denoise(x, i):
        seen.append(x[:, :, :2].clone())
        return torch.zeros_like(x), torch.zeros_like(x)

    wrapped = condition_on_known(denoise, chain, known, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        wrapped(torch.zeros(1, 1, 4, 1, 1), i)
        noise = torch.randn(known.shape, generator=g)
        torch.testing.assert_close(seen[i], chain.alpha(i) * known + chain.sigma(i) * noise)
    assert chain.alpha(0) == 0.0 and chain.alpha(2) == 0.5  # not sqrt(abar) of a VP table
    assert isinstance(chain, SamplingChain) and not chain.variance_preserving


def test_the_flow_loss_is_the_velocity_mse_and_weightings_change_it():
    batch = {"video": torch.rand(4, 3, *CLIP) * 2 - 1, "fps": torch.tensor([4.0, 8.0, 4.0, 8.0]),
             "label": torch.tensor([0, 1, 2, 0])}
    system = system_on({"name": "flow"}, "velocity", known_frames=0.0)
    torch.manual_seed(5)
    loss = system.training_step(batch, step=0).losses["denoiser"]
    torch.manual_seed(5)  # the same draws by hand
    z0 = system.scaled_latent(batch)
    t = system.schedule.sample_timesteps(4, device="cpu")
    noise = torch.randn(z0.shape)
    u = (t / 1000).reshape(4, 1, 1, 1, 1)
    emb = system.embed(batch, mode="train")
    prediction = system.denoiser((1 - u) * z0 + u * noise, t, emb)
    torch.testing.assert_close(loss, F.mse_loss(prediction, noise - z0))
    losses = {}
    for weighting in ("none", "edm"):
        weighted = system_on({"name": "ddpm", "loss_weighting": weighting}, "epsilon", known_frames=0.0)
        torch.manual_seed(5)
        losses[weighting] = float(weighted.training_step(batch, step=0).losses["denoiser"])
    assert losses["edm"] > losses["none"] > 0  # EDM weights an epsilon error by 1 + sigma^2 / alpha^2 > 1


def test_a_schedule_refuses_a_denoiser_it_cannot_read():
    class Legacy(type(create("schedule", "ddpm"))):
        prediction_types = ("epsilon",)

    denoiser = create("denoiser", "dit3d", in_channels=3, width=16, depth=2, heads=2, patch_size=2,
                      prediction_type="velocity")
    with pytest.raises(Exception, match="takes prediction types epsilon; the denoiser predicts 'velocity'"):
        LatentVideoDiffusion(tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=Legacy(), conditioners=[],
                             guidance=None, clip_shape=CLIP)

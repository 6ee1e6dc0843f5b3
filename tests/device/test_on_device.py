"""What must hold on the device a run uses: the CPU by default, a GPU with ``pytest --device cuda``.

These tests take the ``device`` fixture (tests/conftest.py): on the CPU they are part of CI; on a
lent GPU ``scripts/gpu-check.sh`` runs them there. Results on the device are compared with the
same computation on the CPU where the mathematics is the same (deterministic samplers from one
starting noise, the metric networks), with TF32 off so that the comparison is of fp32 with fp32.
The ``cuda``-marked tests need what a CPU cannot give (fp16 with its gradient scaler, a checkpoint
written on another device) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from vqvdm_core.pipeline import open_run, run_recipe
from vqvdm_core.recipe import TrainSettings, load_recipe
from vqvdm_core.runtime.backend_policy import backend_policy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # the engine's toy model
from engine_toys import ToyPairs, make_gan, make_trainer  # noqa: E402

# The real tokenizer, quantizer and U-Net at their smallest, with validation on.
TINY = {
    "name": "device", "seed": 0, "stages": ["tokenizer", "latents", "denoiser"],
    "data": {"train": {"name": "synthetic_motion", "num_clips": 8, "frames": 8, "size": 16,
                       "fps_values": [4.0, 8.0]}},
    "tokenizer": {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 4, "channels": 8,
                  "channel_mults": [1, 1, 1], "num_res_blocks": 1, "norm_groups": 4, "perceptual_weight": 0.0,
                  "quantizer": {"name": "vq", "num_codes": 16, "ema": True, "init_from_data": True}},
    "denoiser": {"name": "unet3d", "channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                 "attention_head_dim": 8, "norm_groups": 4, "known_frames": 0.5},
    "schedule": {"name": "ddpm", "num_train_steps": 50},
    "conditioners": [{"name": "fps"}, {"name": "class"}],
    "guidance": {"name": "cfg", "scale": 2.0},
    "train": {"tokenizer": {"steps": 3, "batch_size": 4, "val_clips": 2, "val_every": 3},
              "denoiser": {"steps": 3, "batch_size": 4, "val_clips": 2, "val_every": 3, "ema_decay": 0.9}},
    "latents": {"batch_size": 4},
    "sample": {"steps": 4, "batch_size": 4},
}

DETERMINISTIC_SAMPLERS = [{"name": "ddim"}, {"name": "euler"}, {"name": "heun"}, {"name": "dpmpp_2m"},
                          {"name": "unipc"}]


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, device):
    """The training stages, validation included, run on the device."""
    root = tmp_path_factory.mktemp("device") / "runs"
    ctx = run_recipe(load_recipe({**TINY, "device": str(device), "output_dir": str(root)}), console=quiet())
    return ctx


def _systems(run: Path, device: torch.device):
    return (open_run(run, ["device=cpu"]).system(trained=True),
            open_run(run, [f"device={device}"]).system(trained=True))


def test_the_training_stages_run_and_validate_on_the_device(device_run, device):
    assert device_run.device.type == device.type
    for stage in TINY["stages"]:
        record = json.loads((device_run.run.path / stage / "stage.json").read_text())
        assert record["status"] == "done", stage
    for stage in ("tokenizer", "denoiser"):
        assert list((device_run.run.path / stage / "val").iterdir()), f"{stage} validation wrote nothing"
        final = json.loads((device_run.run.path / stage / "metrics.json").read_text())
        assert all(math.isfinite(v) for k, v in final.items() if isinstance(v, float)), final


@pytest.mark.parametrize("sampler", DETERMINISTIC_SAMPLERS, ids=lambda s: s["name"])
def test_a_deterministic_sampler_gives_the_cpus_clips_on_the_device(device_run, device, sampler):
    cpu, on_device = _systems(device_run.run.path, device)
    noise = torch.randn(2, *cpu.latent_shape, generator=torch.Generator().manual_seed(3))
    with backend_policy(tf32=False):
        expected = cpu.sample(2, labels=[0, 1], fps=[4.0, 8.0], x_t=noise, steps=4, sampler=sampler, decode=False)
        got = on_device.sample(2, labels=[0, 1], fps=[4.0, 8.0], x_t=noise, steps=4, sampler=sampler,
                               decode=False)
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("sampler", [{"name": "ddpm"}, {"name": "dpmpp_2m", "eta": 1.0}], ids=["ddpm", "sde_dpm"])
def test_ancestral_samplers_and_long_videos_run_on_the_device(device_run, device, sampler):
    _, on_device = _systems(device_run.run.path, device)
    generator = torch.Generator(device=device).manual_seed(0)
    frames = 2 * on_device.clip_shape[0]
    video = on_device.sample(2, labels=[0, 1], fps=[4.0, 8.0], steps=3, sampler=sampler, generator=generator,
                             frames=frames)
    assert video.shape == (2, 3, frames, *on_device.clip_shape[1:]) and video.device.type == device.type
    assert torch.isfinite(video).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_sampling_under_autocast_stays_close_to_fp32(device_run, device, precision):
    if precision == "fp16" and device.type != "cuda":
        pytest.skip("fp16 autocast is CUDA's (the CPU refuses it)")
    from vqvdm_core.runtime.devices import autocast

    _, on_device = _systems(device_run.run.path, device)
    noise = torch.randn(2, *on_device.latent_shape, generator=torch.Generator().manual_seed(4))
    kwargs = dict(labels=[0, 1], fps=[4.0, 8.0], x_t=noise, steps=3, sampler={"name": "ddim"}, decode=False)
    reference = on_device.sample(2, **kwargs)
    with autocast(device, precision):
        low = on_device.sample(2, **kwargs)
    assert torch.isfinite(low).all()
    scale = reference.abs().mean()
    assert (low.float() - reference).abs().mean() < 0.05 * scale  # bf16's 8-bit mantissa, a few calls


def test_an_exported_pipeline_loads_and_samples_on_the_device(device_run, device, tmp_path):
    from vqvdm_core.pipeline.export import export_run
    from vqvdm_core.system import LatentVideoDiffusion

    folder = export_run(device_run.run.path, tmp_path / "pipeline", console=quiet())
    loaded = LatentVideoDiffusion.from_pretrained(folder, device=device)
    cpu, _ = _systems(device_run.run.path, device)
    state = loaded.state_dict()  # the sampling parts (an export leaves the discriminator out)
    assert state and all(name in cpu.state_dict() for name in state)
    for name, value in state.items():
        torch.testing.assert_close(value.cpu(), cpu.state_dict()[name], rtol=0, atol=0, msg=name)
    video = loaded.sample(1, labels=[1], fps=[8.0], steps=2, generator=torch.Generator(device=device).manual_seed(0))
    assert video.shape == (1, 3, *loaded.clip_shape) and video.device.type == device.type


def test_the_metric_networks_give_the_cpus_features_on_the_device(device):
    from vqvdm_plugins.metrics.feature_networks import prepare_clips
    from vqvdm_plugins.metrics.i3d import InceptionI3d

    torch.manual_seed(0)
    network = InceptionI3d().eval()
    video = torch.rand(2, 3, 8, 40, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    clips = prepare_clips(video, size=32)
    with torch.no_grad(), backend_policy(tf32=False):
        expected = network(clips)
        got = network.to(device)(clips.to(device))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-4)


def test_latent_fd_on_the_device_matches_the_cpu(device):
    from vqvdm_plugins.metrics.latent_fd import LatentFD

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, 4, 2, 4, 4, generator=g), torch.randn(64, 4, 2, 4, 4, generator=g) * 1.3 + 0.2
    scores = []
    for where in (torch.device("cpu"), device):
        metric = LatentFD()
        metric.update(real=real.to(where), fake=fake.to(where))
        scores.append(float(metric.compute()["latent_fd"]))
    assert scores[1] == pytest.approx(scores[0], rel=1e-4)


def _toy_settings(**changes) -> TrainSettings:
    base = dict(steps=4, batch_size=4, grad_clip=1.0, log_every=1, val_every=1000, ckpt_every=2, ema_decay=0.9,
                optimizer={"name": "adamw", "lr": 1e-2})
    return TrainSettings(**{**base, **changes})


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_training_step_on_the_device_in_each_precision(tmp_path, device, precision):
    model = make_gan()
    result = make_trainer(model, _toy_settings(precision=precision), tmp_path, device=device).fit(ToyPairs(8))
    assert result.step == 4 and next(model.parameters()).device.type == device.type
    records = [r for r in result.history if r["tag"] == "train"]
    losses = [r[f"loss/{group}"] for r in records for group in ("generator", "discriminator")]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)


@pytest.mark.cuda
def test_fp16_trains_with_the_gradient_scaler(tmp_path, device):
    trainer = make_trainer(make_gan(), _toy_settings(precision="fp16"), tmp_path, device=device)
    trainer.fit(ToyPairs(8))
    assert trainer.scaler is not None and trainer.scaler.get_scale() > 0
    from vqvdm_core.engine.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").get("scaler")


@pytest.mark.cuda
def test_training_resumes_on_the_cpu_from_a_checkpoint_written_on_the_gpu(tmp_path, device):
    make_trainer(make_gan(), _toy_settings(steps=2), tmp_path, device=device).fit(ToyPairs(8))
    model = make_gan(seed=5)
    result = make_trainer(model, _toy_settings(steps=4), tmp_path, device="cpu").fit(ToyPairs(8))
    assert result.step == 4 and model.calls == 2  # steps 3 and 4 only: 1 and 2 came from the GPU's checkpoint
    assert next(model.parameters()).device.type == "cpu"


def test_sharded_training_repeats_bit_for_bit_under_deterministic_algorithms(tmp_path, device):
    weights = []
    for attempt in range(2):
        model = make_gan(noise=True)
        with backend_policy(deterministic=True):
            make_trainer(model, _toy_settings(shards=2), tmp_path / str(attempt), device=device).fit(ToyPairs(8))
        weights.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    for name, value in weights[0].items():
        assert torch.equal(weights[1][name], value), name

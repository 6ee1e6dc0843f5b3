"""Tests of the latte_diffusers denoiser (diffusers' Latte, wrapped), runnable against an installed
copy: `pip install -e './plugins/example-plugin[latte,test]'`, then `pytest plugins/example-plugin/tests`.

Skipped as a whole, saying why, where diffusers is not installed: it is this package's optional
extra `latte`, never a dependency of vqvdm.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers", reason="latte_diffusers wraps diffusers' LatteTransformer3DModel; "
                    "diffusers is not installed (pip install './plugins/example-plugin[latte]')")

from vqvdm_core import create  # noqa: E402
from vqvdm_core.errors import ComponentError  # noqa: E402
from vqvdm_core.recipe import load_recipe  # noqa: E402
from vqvdm_core.registry import Registry, conformance_problem  # noqa: E402
from vqvdm_core.system import build_system  # noqa: E402
from vqvdm_example_plugin import LatteDenoiser, MotionClips  # noqa: E402

TINY = {"num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1, "sample_size": 8,
        "num_frames": 4, "patch_size": 2}


def test_the_entry_point_is_installed_and_the_class_conforms():
    registry = Registry()
    entry = registry.entry("denoiser", "latte_diffusers")
    assert entry.distribution == "vqvdm-example-plugin"
    assert registry.load("denoiser", "latte_diffusers") is LatteDenoiser
    assert conformance_problem("denoiser", LatteDenoiser) is None


def test_in_channels_must_be_set_or_wired():
    with pytest.raises(ComponentError, match="in_channels is not set"):
        create("denoiser", "latte_diffusers", **TINY)
    with pytest.raises(ValueError, match="patch_size"):
        LatteDenoiser.Config(sample_size=9, patch_size=2)


def test_the_output_has_the_input_shape_and_depends_on_the_condition():
    torch.manual_seed(0)
    net = create("denoiser", "latte_diffusers", in_channels=3, **TINY).eval()
    assert net.emb_dim == 16 and net.prediction_type == "epsilon" and net.known_frames_rate == 0.0
    assert create("denoiser", "latte_diffusers", in_channels=3, emb_dim=24, **TINY).emb_dim == 24
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 900])
    emb_a, emb_b = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        out_a, out_b, out_none = net(x, t, emb_a), net(x, t, emb_b), net(x, t)
        out_scalar_t = net(x, torch.tensor(10), emb_a)
    assert out_a.shape == x.shape and out_none.shape == x.shape
    assert (out_a - out_b).abs().mean() > 1e-3  # the condition reaches the network...
    assert (out_a[0] - out_scalar_t[0]).abs().max() < 1e-5  # ...and so does the time step
    assert (out_a[1] - out_scalar_t[1]).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="num_frames"):
        net(torch.randn(1, 3, 5, 8, 8), t[:1])


def test_a_tiny_system_from_a_recipe_trains_with_the_summed_condition():
    """Built from a recipe through the entry point: in_channels comes from the identity tokenizer and
    the conditioners' emb_dim from the wrapper; 20 Adam steps on a fixed batch lower the loss, and the
    conditioners (FPS + motion, summed into emb) learn through Latte's cross-attention."""
    recipe = load_recipe({
        "name": "latte-tiny", "seed": 0, "device": "cpu",
        "data": {"train": {"name": "motion_clips", "num_clips": 4, "frames": 4, "size": 8}},
        "tokenizer": {"name": "identity"},
        "denoiser": {"name": "latte_diffusers", **TINY},
        "schedule": {"name": "ddpm"},
        "conditioners": [{"name": "fps"}, {"name": "motion"}],
    })
    torch.manual_seed(0)
    system = build_system(recipe, num_classes=0, clip_shape=(4, 8, 8))
    assert isinstance(system.denoiser, LatteDenoiser) and system.denoiser.config.in_channels == 3
    assert [c.config.emb_dim for c in system.conditioners] == [system.denoiser.emb_dim] * 2

    data = MotionClips(num_clips=4, frames=4, size=8)
    items = [data[i] for i in range(4)]
    batch = {"video": torch.stack([it["video"] for it in items]),
             "fps": torch.tensor([it["fps"] for it in items]),
             "motion": torch.tensor([it["motion"] for it in items])}
    motion_before = [p.detach().clone() for p in system.conditioners[1].parameters()]
    optimizer = torch.optim.Adam(system.optimizer_groups()["denoiser"], lr=1e-2)
    losses = []
    for step in range(20):
        torch.manual_seed(1)  # the same time steps and noise each step: a fixed objective
        result = system.training_step(batch, step=step)
        optimizer.zero_grad()
        result.losses["denoiser"].backward()
        optimizer.step()
        losses.append(result.logs["loss"])
    assert losses[-1] < 0.6 * losses[0], losses  # measured: 0.35-0.44 of the first over seeds 0-2
    assert any(not torch.equal(a, b) for a, b in zip(motion_before, system.conditioners[1].parameters()))

    system.eval()
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([500, 500])
    with torch.no_grad():
        still = system.embed({"fps": [8.0, 8.0], "motion": [0.0, 0.0]}, mode="cond")
        moving = system.embed({"fps": [8.0, 8.0], "motion": [1.0, 1.0]}, mode="cond")
        assert (system.denoiser(x, t, still) - system.denoiser(x, t, moving)).abs().mean() > 1e-3


def test_a_system_with_it_samples_and_round_trips_through_a_pipeline_folder(tmp_path):
    from vqvdm_core.system import LatentVideoDiffusion

    recipe = load_recipe({
        "name": "latte-tiny", "data": {"train": {"name": "motion_clips", "num_clips": 4, "frames": 4, "size": 8}},
        "tokenizer": {"name": "identity"}, "denoiser": {"name": "latte_diffusers", **TINY},
        "schedule": {"name": "ddpm"}, "conditioners": [{"name": "fps"}, {"name": "motion", "default_motion": 0.5}],
    })
    torch.manual_seed(0)
    system = build_system(recipe, num_classes=0, clip_shape=(4, 8, 8)).eval()
    back = LatentVideoDiffusion.from_pretrained(system.save_pretrained(tmp_path / "pipeline"))
    assert isinstance(back.denoiser, LatteDenoiser)
    torch.manual_seed(0)
    first = system.sample(2, fps=[8.0, 8.0], steps=3)
    torch.manual_seed(0)
    assert first.shape == (2, 3, 4, 8, 8) and torch.equal(back.sample(2, fps=[8.0, 8.0], steps=3), first)

"""LatentVideoDiffusion: composition, conditioning modes, training step, checkpoints, sampling."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvdm_core import create
from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import TrainStep, VideoTokenizer
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.recipe import ComponentSpec
from vqvdm_core.registry import Registry
from vqvdm_core.system import LatentVideoDiffusion, build_system

CLIP = (4, 8, 8)  # T, H, W of the pixel clips; the stand-in tokenizer halves H and W


class PoolTokenizer(VideoTokenizer):
    """Stand-in tokenizer: 2x2 average pooling per frame (times a learnable gain) and back."""

    class Config(ComponentConfig):
        pass

    def __init__(self, config=None, **overrides):  # the constructor's older form: still supported
        super().__init__()
        self.config = self.resolve_config(config, overrides)
        self.gain = nn.Parameter(torch.ones(()))

    @property
    def latent_channels(self) -> int:
        return 3

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (3, frames, height // 2, width // 2)

    def encode(self, video: Tensor) -> Tensor:
        return F.avg_pool3d(video, (1, 2, 2)) * self.gain

    def decode(self, latent: Tensor) -> Tensor:
        return F.interpolate(latent / self.gain, scale_factor=(1, 2, 2), mode="nearest")

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generator": [self.gain]}

    def training_step(self, batch: Any, *, step: int) -> TrainStep:
        loss = F.mse_loss(self.decode(self.encode(batch["video"])), batch["video"])
        return TrainStep({"generator": loss})


def make_system(*, classes: int = 3, rho: float = 0.5, fps: bool = True, guidance: str = "cfg",
                default_fps: float | None = None, latent_scale: float = 1.0) -> LatentVideoDiffusion:
    torch.manual_seed(0)
    denoiser = create("denoiser", "unet3d", in_channels=3, channels=8, channel_mults=[1, 2],
                      num_res_blocks=1, attention_head_dim=4)
    conditioners = []
    if fps:
        conditioners.append(create("conditioner", "fps", emb_dim=denoiser.emb_dim, default_fps=default_fps))
    if classes:
        conditioners.append(create("conditioner", "class", emb_dim=denoiser.emb_dim, num_classes=classes,
                                   dropout=rho))
    return LatentVideoDiffusion(
        tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=create("schedule", "ddpm"),
        conditioners=conditioners, guidance=create("guidance", guidance), clip_shape=CLIP,
        latent_scale=latent_scale)


def randomize(module: nn.Module) -> None:
    """Give zero-initialised output layers random weights so outputs depend on every input."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def batch(n: int = 4, *, labels: list[int] | None = None) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(2)
    return {
        "latent": torch.randn(n, 3, 4, 4, 4, generator=gen),
        "fps": torch.linspace(5.0, 30.0, n),
        "label": torch.tensor(labels if labels is not None else [i % 3 for i in range(n)]),
    }


# -- composition --------------------------------------------------------------------------------


def test_latent_shape_comes_from_the_tokenizer():
    assert make_system().latent_shape == (3, 4, 4, 4)


def test_tokenizer_is_frozen_and_in_no_optimizer_group():
    system = make_system()
    groups = system.optimizer_groups()
    assert list(groups) == ["denoiser"]
    ids = {id(p) for p in groups["denoiser"]}
    expected = {id(p) for m in (system.denoiser, *system.conditioners) for p in m.parameters()}
    assert ids == expected
    assert id(system.tokenizer.gain) not in ids and not system.tokenizer.gain.requires_grad
    system.train()
    assert system.denoiser.training and not system.tokenizer.training


# -- conditioning -------------------------------------------------------------------------------


def test_unconditional_embedding_nulls_the_class_but_keeps_fps():
    system = make_system()
    fps_cond, class_cond = system.conditioners
    fields = {"fps": torch.tensor([8.0, 25.0]), "label": torch.tensor([0, 2])}
    cond = system.embed(fields, mode="cond")
    uncond = system.embed(fields, mode="uncond")
    torch.testing.assert_close(cond, fps_cond(fields["fps"]) + class_cond(fields["label"]))
    torch.testing.assert_close(uncond, fps_cond(fields["fps"]) + class_cond(torch.tensor([3, 3])))


def test_training_embedding_drops_the_class_at_rate_rho_and_never_the_fps():
    system = make_system(rho=0.5)
    fps_cond, class_cond = system.conditioners
    n = 4000
    fields = {"fps": torch.full((n,), 12.5), "label": torch.zeros(n, dtype=torch.long)}
    emb = system.embed(fields, mode="train", generator=torch.Generator().manual_seed(0))
    class_part = emb - fps_cond(fields["fps"])  # the FPS part is always the real one
    with torch.no_grad():
        real, null = class_cond.embedding.weight[0], class_cond.embedding.weight[3]
    is_real = (class_part - real).abs().amax(dim=1) < 1e-5
    is_null = (class_part - null).abs().amax(dim=1) < 1e-5
    assert (is_real ^ is_null).all()
    assert abs(is_null.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)


def test_system_without_conditioners_has_no_embedding():
    system = make_system(classes=0, fps=False, guidance="none")
    assert system.embed({}, mode="train") is None


# -- training -----------------------------------------------------------------------------------


def test_training_step_is_mse_to_the_schedule_target():
    system = make_system(rho=0.0, latent_scale=0.5)
    randomize(system.denoiser)
    b = batch()
    torch.manual_seed(7)
    step = system.training_step(b, step=0)
    # Recompute with the same random draws: time steps, then noise.
    torch.manual_seed(7)
    z0 = b["latent"] * 0.5
    t = system.schedule.sample_timesteps(4, device="cpu")
    noise = torch.randn_like(z0)
    emb = system.embed(b, mode="cond")
    pred = system.denoiser(system.schedule.add_noise(z0, noise, t), t, emb)
    expected = ((pred - noise) ** 2).mean()
    assert list(step.losses) == ["denoiser"]
    torch.testing.assert_close(step.losses["denoiser"], expected)
    assert step.logs["loss"] == pytest.approx(expected.item())


def test_frame_conditioned_loss_of_the_shards_averages_to_the_loss_of_the_batch():
    """Each shard normalises by the global batch's unknown frames (from the global draw of prefix
    lengths), so the mean of the shards' losses is the batch's loss even when the shards hold
    different numbers of unknown frames."""
    from vqvdm_core.runtime.distributed import ShardedStep

    torch.manual_seed(0)
    denoiser = create("denoiser", "unet3d", in_channels=3, channels=8, channel_mults=[1], num_res_blocks=1,
                      attention_head_dim=4, known_frames=0.7)
    system = LatentVideoDiffusion(tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  conditioners=[], guidance=create("guidance", "none"), clip_shape=CLIP)
    randomize(system.denoiser)
    b = batch(4)
    torch.manual_seed(11)
    whole = system.training_step(b, step=0)
    step = ShardedStep(2)
    shard_losses, known = [], []
    for local in range(2):
        torch.manual_seed(11)
        with step.shard(local):
            part = {k: v[2 * local:2 * local + 2] for k, v in b.items()}
            out = system.training_step(part, step=0)
        shard_losses.append(out.losses["denoiser"])
        known.append(out.logs["known_fraction"])
    assert known[0] != known[1]  # the shards hold different numbers of unknown frames
    torch.testing.assert_close((shard_losses[0] + shard_losses[1]) / 2, whole.losses["denoiser"],
                               atol=1e-6, rtol=1e-5)


def test_training_step_encodes_video_on_the_fly_without_tokenizer_gradients():
    system = make_system()
    video = torch.rand(2, 3, *CLIP) * 2 - 1
    torch.testing.assert_close(system.scaled_latent({"video": video}), F.avg_pool3d(video, (1, 2, 2)))
    step = system.training_step({"video": video, "fps": [8.0, 8.0], "label": [0, -1]}, step=0)
    step.losses["denoiser"].backward()
    assert system.tokenizer.gain.grad is None
    assert any(p.grad is not None for p in system.denoiser.parameters())
    with pytest.raises(UserError, match="'latent'"):
        system.training_step({"fps": [8.0], "label": [0]}, step=0)


def test_a_short_training_run_on_synthetic_latents_lowers_the_loss():
    system = make_system(rho=0.5)
    gen = torch.Generator().manual_seed(0)
    patterns = torch.randn(3, 3, 4, 4, 4, generator=gen)  # one latent per class

    def data(n: int, seed: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 3, (n,), generator=g)
        return {"latent": patterns[labels] + 0.05 * torch.randn(n, 3, 4, 4, 4, generator=g),
                "fps": torch.full((n,), 8.0), "label": labels}

    held_out = data(64, seed=99)

    def eval_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return system.training_step(held_out, step=0).losses["denoiser"].item()

    before = eval_loss()
    opt = torch.optim.Adam(system.optimizer_groups()["denoiser"], lr=3e-3)
    system.train()
    for step in range(40):
        loss = system.training_step(data(8, seed=step), step=step).losses["denoiser"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_a_short_training_run_learns_samples_that_follow_the_class():
    """End to end through training and guided sampling: each class's samples land on its pattern.

    v-prediction: with epsilon prediction the same 40 steps leave the high-noise steps'
    x0 estimates tens of times too large (docs/results.md, "the denoiser side").
    """
    torch.manual_seed(0)
    denoiser = create("denoiser", "unet3d", in_channels=3, channels=8, channel_mults=[1, 2],
                      num_res_blocks=1, attention_head_dim=4, prediction_type="v")
    system = LatentVideoDiffusion(
        tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=create("schedule", "ddpm"),
        conditioners=[create("conditioner", "fps", emb_dim=denoiser.emb_dim),
                      create("conditioner", "class", emb_dim=denoiser.emb_dim, num_classes=3, dropout=0.3)],
        guidance=create("guidance", "cfg"), clip_shape=CLIP)
    patterns = torch.randn(3, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))  # one per class
    opt = torch.optim.Adam(system.optimizer_groups()["denoiser"], lr=3e-3)
    system.train()
    for step in range(40):
        g = torch.Generator().manual_seed(step)
        labels = torch.randint(0, 3, (16,), generator=g)
        batch = {"latent": patterns[labels] + 0.05 * torch.randn(16, 3, 4, 4, 4, generator=g),
                 "fps": torch.full((16,), 8.0), "label": labels}
        loss = system.training_step(batch, step=step).losses["denoiser"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    labels = torch.arange(12) % 3
    z = system.sample(12, labels=labels, fps=torch.full((12,), 8.0), steps=20, decode=False,
                      guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    distance = ((z[:, None] - patterns[None]) ** 2).mean(dim=(2, 3, 4, 5))  # (sample, pattern)
    assert torch.equal(distance.argmin(dim=1), labels), distance
    assert float(z.std()) < 2 * float(patterns.std())  # on the data's scale, not blown up


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_excludes_the_tokenizer_and_round_trips():
    system = make_system()
    randomize(system.denoiser)
    system.set_latent_scale(0.25)
    state = system.checkpoint_state_dict()
    assert "latent_scale" in state and not any(k.startswith("tokenizer.") for k in state)
    assert any(k.startswith("denoiser.") for k in state) and any(k.startswith("conditioners.") for k in state)
    fresh = make_system()
    fresh.load_checkpoint_state_dict(state)
    assert fresh.latent_scale.item() == 0.25
    for key, value in fresh.checkpoint_state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(UserError, match="missing conditioners.0"):
        fresh.load_checkpoint_state_dict({k: v for k, v in state.items() if not k.startswith("conditioners.0")})
    with pytest.raises(UserError, match="unexpected"):
        make_system(fps=False).load_checkpoint_state_dict(state)


# -- sampling -----------------------------------------------------------------------------------


def test_seeded_sample_is_reproducible_and_decoded_in_range():
    system = make_system()
    randomize(system.denoiser)

    def run(seed: int, **kw) -> Tensor:
        return system.sample(3, labels=[0, 1, 2], fps=[8.0, 8.0, 24.0], steps=4,
                             generator=torch.Generator().manual_seed(seed), **kw)

    video = run(0)
    assert video.shape == (3, 3, *CLIP)
    assert video.min() >= -1 and video.max() <= 1
    assert torch.equal(video, run(0))
    assert torch.equal(video, run(0, decode_batch_size=2))  # chunked decoding, same clips
    assert not torch.allclose(video, run(1))


def test_sampling_divides_by_the_latent_scale():
    system = make_system(latent_scale=4.0)
    randomize(system.denoiser)
    z = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, decode=False,
                      generator=torch.Generator().manual_seed(0))
    system.set_latent_scale(1.0)
    raw = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, decode=False,
                        generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z * 4.0, raw)


def test_sampling_can_start_mid_chain_from_a_given_state_and_reports_every_level():
    system = make_system(latent_scale=2.0)
    randomize(system.denoiser)
    z0 = torch.randn(2, *system.latent_shape, generator=torch.Generator().manual_seed(3))
    x_t = system.schedule.add_noise(z0 * 2.0, torch.randn_like(z0), torch.full((2,), 300))
    seen = []
    system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=10, sampler="ddim", x_t=x_t, start_step=300,
                  callback=lambda step: seen.append((step.index, step.timestep, tuple(step.x0.shape))))
    assert [t for _, t, _ in seen] == [300, 222, 111, 0]
    assert [i for i, _, _ in seen] == [0, 1, 2, 3] and {shape for *_, shape in seen} == {(2, 3, 4, 4, 4)}
    # From (almost) clean: one level at t = 0, whose x0 estimate is the state itself up to sigma_0.
    clean = system.schedule.add_noise(z0 * 2.0, torch.zeros_like(z0), torch.zeros(2, dtype=torch.long))
    out = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=10, x_t=clean, start_step=0, decode=False)
    torch.testing.assert_close(out, z0, rtol=0, atol=0.05)
    with pytest.raises(UserError, match="latent shape"):
        system.sample(3, labels=[0, 1, 2], fps=[8.0] * 3, x_t=x_t, start_step=300)


def test_the_system_takes_a_sampler_by_name_node_or_object_and_keeps_a_default():
    system = make_system()
    randomize(system.denoiser)

    def run(**kw):
        return system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=4, decode=False,
                             generator=torch.Generator().manual_seed(0), **kw)

    by_name = run(sampler="ddim")
    assert torch.equal(by_name, run(sampler={"name": "ddim", "eta": 0.0}))
    assert torch.equal(by_name, run(sampler=create("sampler", "ddim")))
    assert not torch.equal(by_name, run(sampler="dpmpp_2m"))
    system.sampler = create("sampler", "ddim")
    assert torch.equal(by_name, run())  # the system's default sampler
    with pytest.raises(UserError, match="Did you mean 'ddim'"):
        run(sampler="dimm")


def test_guided_sampling_runs_one_batched_forward_per_step():
    system = make_system()
    sizes: list[int] = []
    system.denoiser.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    seen: list[tuple[int, int]] = []
    system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=5, progress=lambda i, n: seen.append((i, n)))
    assert sizes == [4] * 5  # conditional + unconditional, one forward per step
    assert seen == [(i, 5) for i in range(1, 6)]
    sizes.clear()
    system.sample(2, fps=[8.0, 8.0], steps=5)  # no labels: nothing to guide
    assert sizes == [2] * 5
    sizes.clear()
    system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=5, guidance_scale=1.0)
    assert sizes == [2] * 5


def test_sampling_without_fps_needs_a_default():
    with pytest.raises(UserError, match="'fps'"):
        make_system().sample(1, labels=[0], steps=2)
    assert make_system(default_fps=8.0).sample(1, labels=[0], steps=2).shape == (1, 3, *CLIP)


def test_sampling_checks_the_conditions():
    with pytest.raises(UserError, match="one value per clip"):
        make_system().sample(2, labels=[0], fps=[8.0, 8.0], steps=2)
    with pytest.raises(UserError, match="no class conditioner"):
        make_system(classes=0).sample(1, labels=[1], fps=[8.0], steps=2)


# -- building from a recipe ---------------------------------------------------------------------


def recipe(conditioners: list[dict[str, Any]], **denoiser: Any) -> SimpleNamespace:
    spec = ComponentSpec.model_validate
    return SimpleNamespace(
        tokenizer=spec({"name": "pool"}),
        denoiser=spec({"name": "unet3d", "channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                       **denoiser}),
        schedule=spec({"name": "ddpm"}),
        conditioners=[spec(c) for c in conditioners],
        guidance=spec({"name": "cfg", "scale": 3.0}),
        latents=SimpleNamespace(scale="auto"),
    )


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register("tokenizer", "pool", PoolTokenizer)
    return reg


def test_build_system_wires_derived_fields(registry):
    system = build_system(recipe([{"name": "fps"}, {"name": "class", "dropout": 0.3}]),
                          num_classes=5, clip_shape=CLIP, registry=registry)
    assert system.denoiser.config.in_channels == 3
    fps_cond, class_cond = system.conditioners
    assert fps_cond.config.emb_dim == class_cond.config.emb_dim == system.denoiser.emb_dim
    assert class_cond.config.num_classes == 5 and class_cond.dropout == 0.3
    assert system.guidance.scale == 3.0 and system.latent_scale.item() == 1.0
    assert system.sample(1, labels=[4], fps=[8.0], steps=2).shape == (1, 3, *CLIP)


def test_build_system_refuses_a_class_conditioner_without_classes(registry):
    with pytest.raises(UserError, match="conditioners.1: .*no classes"):
        build_system(recipe([{"name": "fps"}, {"name": "class"}]), num_classes=0, clip_shape=CLIP,
                     registry=registry)
    unconditional = build_system(recipe([]), num_classes=0, clip_shape=CLIP, registry=registry)
    assert len(unconditional.conditioners) == 0


def test_build_system_refuses_inconsistent_explicit_fields(registry):
    with pytest.raises(UserError, match="in_channels is 4"):
        build_system(recipe([], in_channels=4), num_classes=0, clip_shape=CLIP, registry=registry)

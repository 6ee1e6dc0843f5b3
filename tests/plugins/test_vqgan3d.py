"""Behaviour of the paper's 3D VQGAN tokenizer (``vqgan3d``) and the ``identity`` tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from vqvdm_core.errors import ComponentError, UserError
from vqvdm_core.registry import create
from vqvdm_plugins.identity_tokenizer import IdentityTokenizer
from vqvdm_plugins.vqgan3d.tokenizer import VQGAN3D

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions are dominated by OpenMP overhead: with the 2 shared cores busy, 2 threads
    made a step of these tiny models ~20x slower than 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Tiny CPU sizes: factors 4x8 need four levels; everything is 8 channels wide.
TINY = dict(channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1, norm_groups=4, num_codes=32,
            perceptual_weight=0.0, adversarial_weight=0.0, feature_matching_weight=0.0)


def tiny(**overrides) -> VQGAN3D:
    torch.manual_seed(0)
    return VQGAN3D(**{**TINY, **overrides})


def moving_squares(n: int, frames: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``(n, 3, T, H, W)`` clips: one coloured square moving with wrap-around on a plain background."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.empty(n, 3, frames, size, size)
    for i in range(n):
        background = torch.rand(3, generator=g) * 2 - 1
        colour = torch.rand(3, generator=g) * 2 - 1
        side = int(torch.randint(3, size // 2, (1,), generator=g))
        y, x = (int(v) for v in torch.randint(0, size, (2,), generator=g))
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
        frame = background[:, None, None].expand(3, size, size).clone()
        frame[:, :side, :side] = colour[:, None, None]
        for t in range(frames):
            clips[i, :, t] = torch.roll(frame, shifts=(y + dy * t, x + dx * t), dims=(1, 2))
    return clips


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def test_default_factors_encode_paper_clip_to_4x4x16x16():
    tok = tiny(channel_mults=(1, 1, 1, 1))
    assert (tok.config.temporal_factor, tok.config.spatial_factor, tok.latent_channels) == (4, 8, 4)
    assert tok.latent_shape(16, 128, 128) == (4, 4, 16, 16)
    with torch.no_grad():
        latent = tok.encode(torch.zeros(1, 3, 16, 128, 128))
        assert latent.shape == (1, 4, 4, 16, 16)
        assert tok.decode(latent).shape == (1, 3, 16, 128, 128)


@pytest.mark.parametrize("temporal, spatial, mults, clip, latent", [
    (2, 4, (1, 1, 1), (8, 16, 16), (4, 4, 4)),
    (1, 2, (1, 1), (4, 8, 8), (4, 4, 4)),
    (8, 2, (1, 1, 1, 1), (16, 8, 8), (2, 4, 4)),
    (1, 1, (1,), (3, 5, 6), (3, 5, 6)),
])
def test_other_factors_give_matching_shapes(temporal, spatial, mults, clip, latent):
    tok = tiny(temporal_factor=temporal, spatial_factor=spatial, channel_mults=mults, latent_channels=3)
    assert tok.latent_shape(*clip) == (3, *latent)
    with torch.no_grad():
        z = tok.encode(torch.zeros(2, 3, *clip))
        assert z.shape == (2, 3, *latent)
        assert tok.decode(z).shape == (2, 3, *clip)


def test_clip_not_divisible_by_factors_is_a_user_error():
    with pytest.raises(UserError, match=r"16x30x30 .* not divisible .* 4x8x8"):
        tiny().encode(torch.zeros(1, 3, 16, 30, 30))


def test_channel_mults_must_match_the_factors():
    with pytest.raises(ValidationError, match="channel_mults has 3 entries but factors 4x8x8 need 4"):
        VQGAN3D.Config(channel_mults=(1, 2, 2))
    with pytest.raises(ValidationError, match="power of two"):
        VQGAN3D.Config(spatial_factor=6)


def test_registry_builds_vqgan3d_from_keywords_and_rejects_unknown_fields():
    tok = create("tokenizer", "vqgan3d", **TINY)
    assert isinstance(tok, VQGAN3D) and tok.config.channels == 8
    with pytest.raises(ComponentError, match="codebook_size"):
        create("tokenizer", "vqgan3d", codebook_size=10)


def test_group_norm_keeps_at_least_four_channels_per_group():
    from vqvdm_plugins.vqgan3d.residual_block import group_norm

    assert [group_norm(c, 32).num_groups for c in (128, 64, 16, 8, 12, 3)] == [32, 16, 4, 2, 3, 1]
    assert group_norm(128, 8).num_groups == 8


def test_group_norm_with_zero_groups_is_no_normalisation():
    from vqvdm_plugins.vqgan3d.residual_block import group_norm

    tok = tiny(norm_groups=0)
    assert isinstance(group_norm(16, 0), nn.Identity)
    assert not any(isinstance(m, nn.GroupNorm) for m in tok.modules())


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_lean_layouts_keep_the_shapes_and_widths(upsample):
    """No residual blocks per level (the strided convolutions widen), no middle blocks, either
    upsampling: the same latent and clip shapes, and the widths the channel multipliers ask for."""
    tok = tiny(channel_mults=(1, 2, 2, 4), num_res_blocks=0, mid_blocks=0, upsample=upsample)
    assert not any(isinstance(m, nn.GroupNorm) for m in tok.encoder.mid.modules())
    assert len(tok.encoder.mid) == len(tok.decoder.mid) == 0
    downs = [m.conv for m in tok.encoder.down]
    assert [(c.in_channels, c.out_channels) for c in downs] == [(8, 16), (16, 16), (16, 32)]
    ups = [m.conv for m in tok.decoder.up]
    assert [(c.in_channels, c.out_channels) for c in ups] == [(32, 16), (16, 16), (16, 8)]
    kind = nn.ConvTranspose3d if upsample == "transposed" else nn.Conv3d
    assert all(isinstance(c, kind) for c in ups)  # a ConvTranspose3d is not an nn.Conv3d
    with torch.no_grad():
        z = tok.encode(torch.zeros(2, 3, 16, 32, 32))
        assert z.shape == (2, 4, 4, 4, 4)
        assert tok.decode(z).shape == (2, 3, 16, 32, 32)


def test_transposed_upsampling_doubles_only_the_strided_axes():
    from vqvdm_plugins.vqgan3d.decoder import Upsample

    up = Upsample(in_channels=4, out_channels=2, time_stride=1, space_stride=2, spatial_padding="zeros",
                  mode="transposed")
    assert up(torch.zeros(1, 4, 3, 5, 6)).shape == (1, 2, 3, 10, 12)


def test_codebook_is_trained_by_the_generator_optimizer_only_without_ema():
    plain, ema = tiny(), tiny(codebook_ema=True)
    assert any(p is plain.quantizer.codebook for p in plain.optimizer_groups()["generator"])
    assert not any(p is ema.quantizer.codebook for p in ema.optimizer_groups()["generator"])
    assert "discriminator" not in plain.optimizer_groups()  # no GAN weights: no discriminator


# --------------------------------------------------------------------------------------------
# Temporal replicate padding
# --------------------------------------------------------------------------------------------


def test_temporal_padding_copies_the_edge_frame_not_zeros():
    from vqvdm_plugins.vqgan3d.padding import TemporalReplicateConv3d

    conv = TemporalReplicateConv3d(1, 1, kernel_size=(3, 1, 1), bias=False)
    zero_padded = nn.Conv3d(1, 1, (3, 1, 1), padding=(1, 0, 0), bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0] = 1.0  # output frame t = input frame t - 1
        zero_padded.weight.copy_(conv.weight)
    x = torch.rand(1, 1, 5, 4, 4) + 1.0
    out, out_zero = conv(x), zero_padded(x)
    assert torch.equal(out[:, :, 0], x[:, :, 0])  # the real first frame, copied
    assert torch.equal(out[:, :, 1:], x[:, :, :-1])
    assert torch.equal(out_zero[:, :, 0], torch.zeros_like(x[:, :, 0]))
    assert not torch.allclose(out, out_zero)


@pytest.mark.parametrize("mode", ["zeros", "replicate", "reflect"])
def test_spatial_padding_mode_is_configurable(mode):
    from vqvdm_plugins.vqgan3d.padding import TemporalReplicateConv3d

    conv = TemporalReplicateConv3d(1, 1, kernel_size=(1, 3, 1), spatial_padding=mode, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # output row h = input row h - 1
    x = torch.rand(1, 1, 2, 4, 3) + 1.0
    top = conv(x)[:, :, :, 0]
    expected = {"zeros": torch.zeros_like(x[:, :, :, 0]), "replicate": x[:, :, :, 0], "reflect": x[:, :, :, 1]}
    assert torch.equal(top, expected[mode])


def test_strided_padded_conv_halves_every_axis():
    from vqvdm_plugins.vqgan3d.padding import TemporalReplicateConv3d

    for mode in ("zeros", "replicate"):
        conv = TemporalReplicateConv3d(2, 3, kernel_size=4, stride=2, spatial_padding=mode)
        assert conv(torch.rand(1, 2, 8, 6, 10)).shape == (1, 3, 4, 3, 5)
        conv = TemporalReplicateConv3d(2, 3, kernel_size=(3, 4, 4), stride=(1, 2, 2), spatial_padding=mode)
        assert conv(torch.rand(1, 2, 5, 6, 10)).shape == (1, 3, 5, 3, 5)


# --------------------------------------------------------------------------------------------
# Quantizer
# --------------------------------------------------------------------------------------------


def _quantizer(**kw):
    from vqvdm_plugins.vqgan3d.quantizer import VectorQuantizer

    torch.manual_seed(0)
    return VectorQuantizer(**{"num_codes": 16, "code_dim": 3, **kw})


def test_quantizer_picks_nearest_code_and_computes_eq2_terms():
    vq = _quantizer()
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(2, 3, 2, 3, 3)
    out = vq(z)
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    expected = torch.cdist(flat, vq.codebook.detach()).argmin(dim=1)
    assert torch.equal(out.indices.flatten(), expected)
    chosen = vq.codebook.detach()[expected]
    assert torch.allclose(out.z_q.permute(0, 2, 3, 4, 1).reshape(-1, 3), chosen, atol=1e-6)
    mse = ((chosen - flat) ** 2).mean()
    assert torch.allclose(out.codebook_loss, mse) and torch.allclose(out.commitment_loss, mse)
    assert torch.allclose(out.loss, mse * 1.25)


def test_eq2_beta_weighs_the_commitment_term_in_the_gradients():
    """The two Eq. 2 terms are equal in value, so only gradients show which one beta scales."""
    vq = _quantizer(beta=0.25)
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(2, 3, 2, 3, 3, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    flat = z.detach().permute(0, 2, 3, 4, 1).reshape(-1, 3)  # (B t h w, c)
    idx = out.indices.flatten()
    q = vq.codebook.detach()[idx]
    n = flat.numel()
    # beta ||z_e - sg[e]||^2 moves the encoder output: d/dz = beta * 2 (z - e) / n
    expected_z = (0.25 * 2 * (flat - q) / n).reshape(2, 2, 3, 3, 3).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(z.grad, expected_z)
    # ||sg[z_e] - e||^2 moves the codebook with weight 1: d/de = 2 (e - z) / n, summed per code
    expected_codes = torch.zeros_like(vq.codebook).index_add_(0, idx, 2 * (q - flat) / n)
    torch.testing.assert_close(vq.codebook.grad, expected_codes)


def test_straight_through_gradient_is_identity_for_the_latent():
    vq = _quantizer()
    z = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    weights = torch.randn(1, 3, 2, 2, 2)
    (vq(z).z_q * weights).sum().backward()
    assert torch.allclose(z.grad, weights)


def test_codebook_loss_moves_only_codebook_and_commitment_only_encoder_output():
    vq = _quantizer()
    z = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    vq(z).codebook_loss.backward()
    assert z.grad is None
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0

    vq.codebook.grad = None
    z = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    vq(z).commitment_loss.backward()
    assert vq.codebook.grad is None
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_gradients_reach_the_encoder_through_the_quantizer():
    cases = [(tiny(), moving_squares(1, frames=8, size=16)),
             (tiny(temporal_factor=2, spatial_factor=2, channel_mults=(1, 1)), moving_squares(1, frames=4, size=8))]
    for model, clip in cases:
        recon, _ = model.reconstruct(clip)
        F.mse_loss(recon, clip).backward()
        grad = model.encoder.conv_in.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_usage_statistics_count_distinct_codes():
    vq = _quantizer(num_codes=8)
    with torch.no_grad():
        vq.codebook.copy_(torch.eye(8, 3) * 5)
    # Four vectors exactly on codes 0, 1, 2, 2: probabilities (1/4, 1/4, 1/2).
    z = torch.stack([vq.codebook[i].detach() for i in (0, 1, 2, 2)]).T.reshape(1, 3, 1, 2, 2)
    out = vq(z)
    probs = torch.tensor([0.25, 0.25, 0.5])
    assert math.isclose(float(out.perplexity), float(torch.exp(-(probs * probs.log()).sum())), rel_tol=1e-5)
    assert math.isclose(float(out.codes_in_use), 3 / 8)


def test_distances_run_in_float32_under_autocast():
    vq = _quantizer(num_codes=2, code_dim=4)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0] * 4, [1.003] * 4]))  # equal in bfloat16
    z = torch.full((1, 4, 1, 1, 1), 1.003)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert int(out.indices.flatten()[0]) == 1
    assert out.z_q.dtype == z.dtype


def test_chunked_distance_search_matches_one_shot():
    vq = _quantizer(num_codes=64)
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(3, 3, 2, 4, 4)
    whole = vq(z).indices
    vq.max_distance_elements = 64 * 5  # five rows per chunk
    assert torch.equal(vq(z).indices, whole)


def test_l2_normalised_lookup_uses_cosine_similarity_and_unit_codes():
    vq = _quantizer(l2_normalize=True)
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(1, 3, 2, 2, 2) * 10
    out = vq(z)
    flat = F.normalize(z.permute(0, 2, 3, 4, 1).reshape(-1, 3), dim=1)
    expected = (flat @ F.normalize(vq.codebook.detach(), dim=1).T).argmax(dim=1)
    assert torch.equal(out.indices.flatten(), expected)
    assert torch.allclose(out.z_q.norm(dim=1), torch.ones(1, 2, 2, 2), atol=1e-5)


def test_ema_codebook_moves_to_running_mean_of_assigned_vectors():
    vq = _quantizer(num_codes=4, code_dim=2, ema=True, ema_decay=0.9, ema_eps=0.0)
    assert "codebook" not in dict(vq.named_parameters())
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.tensor([[0.5, 0.2], [0.3, 0.4], [9.0, 11.0]]).T.reshape(1, 2, 1, 1, 3)
    out = vq(z, update=True)
    assert float(out.codebook_loss) == 0.0
    # code 0 got 2 vectors summing to (0.8, 0.6): (0.9 * e0 + 0.1 * sum) / (0.9 * 1 + 0.1 * 2).
    # With ema_eps = 0, Laplace smoothing leaves the counts as they are.
    assert torch.allclose(vq.codebook[0], torch.tensor([0.08, 0.06]) / 1.1, atol=1e-6)
    assert torch.allclose(vq.codebook[1], (0.9 * torch.tensor([10.0, 10.0]) + 0.1 * torch.tensor([9.0, 11.0])) / 1.0)
    assert torch.allclose(vq.codebook[2], torch.tensor([-10.0, 10.0]))  # unused: stays put
    z_eval = vq(z)  # no update without update=True
    assert torch.allclose(vq.codebook[0], torch.tensor([0.08, 0.06]) / 1.1, atol=1e-6)
    assert z_eval.indices.flatten().tolist() == [0, 0, 1]


def test_init_from_data_fills_codebook_with_encoder_outputs_once():
    vq = _quantizer(num_codes=8, code_dim=2, init_from_data=True)
    assert not bool(vq.initialized)
    data = torch.tensor([[5.0, 5.0], [-5.0, 3.0], [2.0, -7.0]])
    z = data.T.reshape(1, 2, 1, 1, 3)
    vq(z)  # evaluation: no initialisation
    assert not bool(vq.initialized)
    vq(z, update=True)
    assert bool(vq.initialized)
    nearest = torch.cdist(vq.codebook.detach(), data).min(dim=1).values
    assert (nearest < 0.1).all()
    before = vq.codebook.detach().clone()
    vq(z * 100, update=True)
    assert torch.equal(vq.codebook.detach(), before)  # no second initialisation (plain codebook)


def test_dead_codes_are_reseeded_from_the_batch_and_live_codes_kept():
    vq = _quantizer(num_codes=6, code_dim=2, dead_code_threshold=1.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(5)]))
    data = torch.randn(40, 2) * 0.5
    vq(data.T.reshape(1, 2, 1, 5, 8), update=True)
    assert torch.equal(vq.codebook[0].detach(), torch.zeros(2))  # used: untouched
    nearest = torch.cdist(vq.codebook.detach()[1:], data).min(dim=1).values
    assert (nearest < 0.1).all()  # the dead ones now sit on batch vectors
    assert (vq.usage[1:] == 1.0).all()


def test_a_sharded_step_updates_the_codebook_once_from_every_shard():
    """In a sharded step the lookups of all shards use the step's codebook, and one update after the
    last shard equals the update from the whole batch: the same counts, the EMA sums to rounding,
    dead codes re-seeded with the same rows of the global batch."""
    from vqvdm_core.runtime.distributed import ShardedStep

    def fresh():
        vq = _quantizer(num_codes=8, code_dim=3, ema=True, ema_decay=0.9, dead_code_threshold=0.95)
        with torch.no_grad():
            vq.codebook.copy_(torch.randn(8, 3, generator=torch.Generator().manual_seed(4)))
            vq.ema_sum.copy_(vq.codebook)
        return vq

    z = torch.randn(4, 3, 1, 2, 3, generator=torch.Generator().manual_seed(5))  # 4 clips, 6 vectors each
    whole = fresh()
    torch.manual_seed(9)  # the re-seeded rows' draw
    expected = whole(z, update=True).indices
    assert (whole.usage == 0.95).any()  # some codes went unused and were re-seeded

    sharded = fresh()
    start = sharded.codebook.clone()
    step = ShardedStep(2)
    indices = []
    for local in range(2):
        with step.shard(local):
            indices.append(sharded(z[2 * local:2 * local + 2], update=True).indices)
        assert torch.equal(sharded.codebook, start)  # nothing moves before the last shard is done
    torch.manual_seed(9)
    step.finish()
    assert torch.equal(torch.cat(indices), expected)
    torch.testing.assert_close(sharded.ema_count, whole.ema_count, atol=0, rtol=0)
    torch.testing.assert_close(sharded.usage, whole.usage, atol=0, rtol=0)
    torch.testing.assert_close(sharded.ema_sum, whole.ema_sum, atol=1e-6, rtol=0)
    torch.testing.assert_close(sharded.codebook, whole.codebook, atol=1e-6, rtol=0)


def test_a_sharded_step_initialises_the_codebook_from_shard_zero_before_any_lookup():
    from vqvdm_core.runtime.distributed import ShardedStep

    vq = _quantizer(num_codes=8, code_dim=2, init_from_data=True)
    first, second = torch.full((1, 2, 1, 1, 3), 5.0), torch.full((1, 2, 1, 1, 3), -5.0)
    step = ShardedStep(2)
    with step.shard(0):
        vq(first, update=True)
    assert bool(vq.initialized)
    assert torch.allclose(vq.codebook.detach(), torch.full((8, 2), 5.0), atol=0.1)  # shard 0's vectors
    with step.shard(1):
        vq(second, update=True)
    step.finish()
    assert torch.allclose(vq.codebook.detach(), torch.full((8, 2), 5.0), atol=0.1)  # not initialised twice


def test_ema_buffers_are_in_the_state_dict():
    vq = _quantizer(ema=True, init_from_data=True, dead_code_threshold=1.0)
    keys = set(vq.state_dict())
    assert {"codebook", "ema_count", "ema_sum", "usage", "initialized"} <= keys


# --------------------------------------------------------------------------------------------
# GAN terms
# --------------------------------------------------------------------------------------------


def test_adversarial_factor_switches_on_at_start_and_ramps():
    from vqvdm_plugins.vqgan3d.losses import adversarial_factor

    assert [adversarial_factor(s, start=10) for s in (0, 9, 10, 11)] == [0.0, 0.0, 1.0, 1.0]
    ramp = [adversarial_factor(s, start=10, warmup=4) for s in (9, 10, 11, 13, 14, 100)]
    assert ramp == [0.0, 0.25, 0.5, 1.0, 1.0, 1.0]


def test_gan_losses_match_their_formulas():
    from vqvdm_plugins.vqgan3d.losses import discriminator_loss, generator_adversarial_loss

    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2, 1.5])
    bce_d = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    assert torch.allclose(discriminator_loss(real, fake, "bce"), bce_d)
    assert torch.allclose(generator_adversarial_loss(fake, "bce"), -torch.sigmoid(fake).log().mean())
    hinge_d = torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean()
    assert torch.allclose(discriminator_loss(real, fake, "hinge"), hinge_d)
    assert torch.allclose(generator_adversarial_loss(fake, "hinge"), -fake.mean())


def test_discriminator_downsamples_every_layer_and_exposes_features():
    from vqvdm_plugins.vqgan3d.discriminator import VideoDiscriminator

    disc = VideoDiscriminator(channels=4, num_layers=3, norm_groups=2)
    logits, features = disc(torch.rand(2, 3, 8, 32, 32))
    assert [tuple(f.shape) for f in features] == [(2, 4, 4, 16, 16), (2, 8, 2, 8, 8), (2, 16, 1, 4, 4)]
    assert logits.shape == (2, 1, 1, 2, 2)


def test_feature_matching_is_zero_for_identical_inputs_and_positive_otherwise():
    from vqvdm_plugins.vqgan3d.discriminator import VideoDiscriminator
    from vqvdm_plugins.vqgan3d.losses import feature_matching_loss

    torch.manual_seed(0)
    disc = VideoDiscriminator(channels=4, num_layers=2, norm_groups=2)
    x = torch.rand(1, 3, 4, 16, 16)
    _, feats = disc(x)
    _, feats_same = disc(x.clone())
    assert float(feature_matching_loss(feats, feats_same).detach()) == 0.0
    fake = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    _, feats_fake = disc(fake)
    loss = feature_matching_loss(feats, feats_fake)
    assert float(loss.detach()) > 0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


GAN = dict(adversarial_weight=0.5, feature_matching_weight=1.0, disc_channels=4, disc_layers=2,
           discriminator_start=5, temporal_factor=2, spatial_factor=2, channel_mults=(1, 1))


def test_adversarial_terms_are_zero_before_switch_on_and_nonzero_after():
    tok = tiny(**GAN)
    batch = {"video": moving_squares(2, frames=4, size=16)}
    before = tok.training_step(batch, step=4)
    assert before.logs["gan_factor"] == 0.0 and "adversarial" not in before.logs
    d_before = before.losses["discriminator"]
    assert float(d_before) == 0.0 and not d_before.requires_grad  # nothing for the engine to step

    after = tok.training_step(batch, step=5)
    assert after.logs["gan_factor"] == 1.0
    assert after.logs["adversarial"] > 0 and after.logs["feature_matching"] > 0
    assert float(after.losses["discriminator"].detach()) > 0
    gan_part = 0.5 * after.logs["adversarial"] + 1.0 * after.logs["feature_matching"]
    assert math.isclose(float(after.losses["generator"].detach() - before.losses["generator"].detach()), gan_part,
                        rel_tol=1e-4)


def test_frames_too_small_for_the_discriminator_fail_at_the_first_step():
    tok = tiny(**{**GAN, "disc_layers": 3})
    with pytest.raises(UserError, match="too small for the vqgan3d discriminator"):
        tok.training_step({"video": moving_squares(1, frames=4, size=8)}, step=0)


def test_discriminator_loss_does_not_reach_the_generator():
    tok = tiny(**GAN)
    out = tok.training_step({"video": moving_squares(2, frames=4, size=16)}, step=10)
    out.losses["discriminator"].backward()
    assert all(p.grad is None for p in tok.optimizer_groups()["generator"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tok.discriminator.parameters())


def test_engine_order_updates_both_groups_without_graph_errors():
    tok = tiny(**GAN)
    groups = tok.optimizer_groups()
    assert set(groups) == {"generator", "discriminator"}
    assert not {id(p) for p in groups["generator"]} & {id(p) for p in groups["discriminator"]}
    opts = {name: torch.optim.Adam(params, lr=1e-3) for name, params in groups.items()}
    snapshot = {name: [p.detach().clone() for p in params] for name, params in groups.items()}
    out = tok.training_step({"video": moving_squares(2, frames=4, size=16)}, step=5)
    items = list(out.losses.items())
    assert [name for name, _ in items] == ["generator", "discriminator"]
    for i, (name, loss) in enumerate(items):  # what the engine does
        opts[name].zero_grad(set_to_none=True)
        loss.backward(retain_graph=i < len(items) - 1)
        opts[name].step()
    for name, params in groups.items():
        assert any(not torch.equal(p, q) for p, q in zip(params, snapshot[name])), name


# --------------------------------------------------------------------------------------------
# Training, round trips, batch sizes
# --------------------------------------------------------------------------------------------


def test_short_training_run_lowers_reconstruction_error():
    torch.manual_seed(0)
    tok = VQGAN3D(channels=16, channel_mults=(1, 2), num_res_blocks=1, num_codes=64,
                  temporal_factor=2, spatial_factor=2, perceptual_weight=0.0, adversarial_weight=0.0,
                  feature_matching_weight=0.0, codebook_ema=True, codebook_init_from_data=True,
                  dead_code_threshold=1.0)
    video = moving_squares(4, frames=4, size=16)
    # The error of predicting each clip's mean colour: beating it needs the squares, not just the background.
    colour_only = float(F.mse_loss(video.mean(dim=(2, 3, 4), keepdim=True).expand_as(video), video))
    opt = torch.optim.Adam(tok.optimizer_groups()["generator"], lr=1e-3)

    def error() -> float:
        tok.eval()
        with torch.no_grad():
            err = float(F.mse_loss(tok.decode(tok.encode(video)), video))
        tok.train()
        return err

    initial = error()
    for step in range(60):
        loss = tok.training_step({"video": video}, step=step).losses["generator"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = error()
    assert final < 0.2 * initial, (initial, final)
    assert final < 0.6 * colour_only, (colour_only, final)


def test_state_dict_round_trip_gives_identical_reconstructions(tmp_path):
    config = dict(codebook_ema=True, codebook_init_from_data=True, dead_code_threshold=1.0,
                  perceptual_weight=1.0, perceptual_pretrained=False, **GAN)
    with pytest.warns(UserWarning, match="RANDOM"):
        tok = tiny(**config)
    video = moving_squares(2, frames=4, size=16)
    for step in range(2):
        tok.training_step({"video": video}, step=step)  # EMA and re-seeding change buffers
    tok.eval()
    state = tok.state_dict()
    assert not any("lpips" in k or "perceptual" in k for k in state)  # the loss network is not saved
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "tok.safetensors")

    with pytest.warns(UserWarning, match="RANDOM"):
        fresh = VQGAN3D(**{**TINY, **config})
    fresh.load_state_dict(load_file(tmp_path / "tok.safetensors"))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.encode(video), tok.encode(video))
        assert torch.equal(fresh.decode(fresh.encode(video)), tok.decode(tok.encode(video)))
    assert bool(fresh.quantizer.initialized)


def test_encode_and_decode_work_on_any_batch_size():
    tok = tiny(temporal_factor=2, spatial_factor=2, channel_mults=(1, 1)).eval()
    video = moving_squares(3, frames=4, size=8)
    with torch.no_grad():
        latents = tok.encode(video)
        single = torch.cat([tok.encode(video[i:i + 1]) for i in range(3)])
        assert torch.allclose(latents, single, atol=1e-5)
        decoded = tok.decode(latents)
        assert torch.allclose(decoded[1:], tok.decode(latents[1:]), atol=1e-5)
        assert tok.decode(latents[:1]).shape == (1, 3, 4, 8, 8)


def test_decode_accepts_off_codebook_latents_and_can_quantize_first():
    tok = tiny(temporal_factor=2, spatial_factor=2, channel_mults=(1, 1)).eval()
    with torch.no_grad():
        latent = tok.encode(moving_squares(1, frames=4, size=8))
        off = latent + 0.05 * torch.randn_like(latent)
        assert not torch.equal(tok.decode(off), tok.decode(latent))
        assert torch.equal(tok.decode(off, quantize=True), tok.decode(tok.quantizer.quantize(off)))
        snapping = tiny(temporal_factor=2, spatial_factor=2, channel_mults=(1, 1), decode_quantizes=True).eval()
        snapping.load_state_dict(tok.state_dict())
        assert torch.equal(snapping.decode(off), tok.decode(off, quantize=True))


# --------------------------------------------------------------------------------------------
# Perceptual loss (LPIPS) loading
# --------------------------------------------------------------------------------------------


def test_missing_vgg_weights_are_named_for_training_and_not_needed_to_encode_or_decode(tmp_path, monkeypatch):
    from vqvdm_core.errors import MissingFileError

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    tok = tiny(perceptual_weight=1.0, perceptual_pretrained=True)  # sampling and encoding: no VGG needed
    video = moving_squares(1, frames=8, size=16)
    assert tok.decode(tok.encode(video)).shape == video.shape
    assert type(tok).missing_files(tok.config, purpose="use") == []
    problems = type(tok).missing_files(tok.config, purpose="train")
    assert len(problems) == 1
    with pytest.raises(MissingFileError) as info:  # a direct training step says the same
        tok.training_step({"video": video}, step=0)
    for message in (problems[0], str(info.value)):
        assert "vgg16-397923af.pth" in message
        assert str(tmp_path / "checkpoints" / "vgg16-397923af.pth") in message
        assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
        assert "perceptual_pretrained: false" in message
    assert type(tok).missing_files(tiny(perceptual_weight=0.0).config, purpose="train") == []


def test_zero_perceptual_weight_never_builds_lpips(monkeypatch):
    import vqvdm_plugins.vqgan3d.perceptual as perceptual

    def refuse(**_):
        raise AssertionError("LPIPS must not be built")

    monkeypatch.setattr(perceptual, "build_lpips", refuse)
    tok = tiny(perceptual_weight=0.0)
    logs = tok.training_step({"video": moving_squares(1, frames=8, size=16)}, step=0).logs
    assert "perceptual" not in logs


@pytest.mark.filterwarnings("ignore:.*(pretrained|weights).*deprecated:UserWarning")
def test_vgg_weights_are_loaded_from_the_hub_cache(tmp_path, monkeypatch):
    import lpips

    from vqvdm_plugins.vqgan3d.perceptual import build_lpips

    # A features-only VGG16 state dict with recognisable values, in an otherwise empty hub dir.
    reference = lpips.pretrained_networks.vgg16(pretrained=False)
    state = {}
    for slice_ in (reference.slice1, reference.slice2, reference.slice3, reference.slice4, reference.slice5):
        for index, layer in slice_.named_children():
            if isinstance(layer, nn.Conv2d):
                state[f"features.{index}.weight"] = torch.full_like(layer.weight, float(index))
                state[f"features.{index}.bias"] = torch.full_like(layer.bias, -float(index))
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "vgg16-397923af.pth")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    model = build_lpips(pretrained=True)
    conv = dict(model.net.slice3.named_children())["14"]  # features.14 is a conv of VGG16's third block
    assert torch.equal(conv.weight, torch.full_like(conv.weight, 14.0))
    assert torch.equal(conv.bias, torch.full_like(conv.bias, -14.0))
    assert not any(p.requires_grad for p in model.parameters())


def test_perceptual_loss_on_a_frame_subset_is_zero_for_identical_clips():
    from vqvdm_plugins.vqgan3d.perceptual import PerceptualLoss

    with pytest.warns(UserWarning, match="RANDOM"):
        loss = PerceptualLoss(pretrained=False, frames=2)
    video = moving_squares(2, frames=6, size=16)
    assert float(loss(video, video)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(video, video.flip(-1))) > 0


# --------------------------------------------------------------------------------------------
# Identity tokenizer
# --------------------------------------------------------------------------------------------


def test_identity_tokenizer_round_trips_pixels_and_has_nothing_to_train():
    tok = create("tokenizer", "identity")
    assert isinstance(tok, IdentityTokenizer)
    video = moving_squares(2, frames=4, size=8)
    assert tok.latent_channels == 3 and tok.latent_shape(4, 8, 8) == (3, 4, 8, 8)
    assert torch.equal(tok.decode(tok.encode(video)), video)
    assert list(tok.parameters()) == [] and not tok.trainable
    assert tok.optimizer_groups() == {}
    assert tok.training_step({"video": video}, step=0).losses == {}


def test_eq5_weights_scale_the_l2_and_vq_terms_of_the_generator_loss():
    video = moving_squares(2)
    losses = {}
    for name, weights in {"base": dict(l2_weight=1.0, vq_weight=1.0), "l2x3": dict(l2_weight=3.0, vq_weight=1.0),
                          "vq0": dict(l2_weight=1.0, vq_weight=0.0)}.items():
        tok = tiny(**weights).eval()
        step = tok.training_step({"video": video}, step=0)
        losses[name] = (float(step.losses["generator"].detach()), {k: float(v) for k, v in step.logs.items()})
    base, logs = losses["base"]
    l2, vq = logs["l2"], logs["vq"]
    assert base == pytest.approx(l2 + vq, rel=1e-5)
    assert losses["l2x3"][0] == pytest.approx(3 * l2 + vq, rel=1e-5)
    assert losses["vq0"][0] == pytest.approx(l2, rel=1e-5)


def test_the_perceptual_weight_adds_lpips_to_the_generator_loss():
    video = moving_squares(1)
    with pytest.warns(UserWarning, match="RANDOM VGG16"):
        tok = tiny(perceptual_weight=0.5, perceptual_pretrained=False).eval()
    step = tok.training_step({"video": video}, step=0)
    logs = {k: float(v) for k, v in step.logs.items()}  # 0-dim tensors, read when recorded
    assert logs["perceptual"] > 0
    assert float(step.losses["generator"].detach()) == pytest.approx(logs["l2"] + logs["vq"] + 0.5 * logs["perceptual"],
                                                            rel=1e-5)


def test_the_random_backbone_warning_reaches_the_terminal_once():
    import subprocess
    import sys

    code = "from vqvdm_plugins.vqgan3d.perceptual import PerceptualLoss\nPerceptualLoss(pretrained=False)\n"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert shown.count("RANDOM VGG16") == 1, shown

"""The Latte-style video transformer denoiser (``dit3d``) and its parts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from vqvdm_core import create
from vqvdm_core.errors import ComponentError
from vqvdm_plugins.dit3d import DiT3D
from vqvdm_plugins.dit3d.attention import AxisAttention, attend
from vqvdm_plugins.dit3d.block import DiTBlock
from vqvdm_plugins.dit3d.patches import PatchEmbed, unpatchify
from vqvdm_plugins.dit3d.positions import sincos_2d


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Replace every weight (the zero-initialised adaLN and output layers included) with random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def tiny_dit(**overrides) -> DiT3D:
    config = dict(in_channels=4, width=32, depth=4, heads=4)
    config.update(overrides)
    return DiT3D(**config)


# -- parts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "pt"), [(1, 1), (2, 1), (4, 2), (2, 2)])
def test_unpatchify_inverts_the_patch_order_of_the_embedding(p, pt):
    # An embedding that copies each patch's values into its token in unpatchify's order (frame,
    # row, column, channel): unpatchify must put them back where they were.
    c, numel = 3, 3 * pt * p * p
    embed = PatchEmbed(in_channels=c, width=numel, patch_size=p, temporal_patch_size=pt)
    with torch.no_grad():
        embed.proj.weight.copy_(torch.eye(numel).reshape(numel, pt, p, p, c).permute(0, 4, 1, 2, 3))
        embed.proj.bias.zero_()
    x = torch.randn(2, c, 2 * pt, 4, 8)
    tokens = embed(x)
    assert tokens.shape == (2, 2, (4 // p) * (8 // p), numel)
    torch.testing.assert_close(unpatchify(tokens, channels=c, patch_size=p, temporal_patch_size=pt, height=4), x)


def test_sincos_positions_tell_every_patch_apart_and_are_the_transformer_encoding():
    table = sincos_2d(3, 5, 16)
    assert table.shape == (15, 16)
    assert torch.cdist(table, table).add(torch.eye(15) * 10).min() > 0.1  # no two patches share a code
    # Patch (row 2, column 4): row 2's [cos, sin] codes in the first half, column 4's in the second.
    freqs = 10_000 ** (-torch.arange(4) / 4)
    expected = torch.cat([torch.cos(2 * freqs), torch.sin(2 * freqs), torch.cos(4 * freqs), torch.sin(4 * freqs)])
    torch.testing.assert_close(table[2 * 5 + 4], expected)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


def test_axis_attention_matches_a_softmax_reference():
    attn = randomize(AxisAttention(width=8, heads=2, axis="temporal", causal=True))
    x = torch.randn(2, 5, 3, 8)  # (B, T, S, width)
    q, k, v = attn.to_qkv(x.permute(0, 2, 1, 3)).chunk(3, dim=-1)  # each (B, S, T, width)
    split = lambda a: a.unflatten(-1, (2, 4)).transpose(-2, -3)  # (B, S, heads, T, d)
    scores = split(q) @ split(k).transpose(-1, -2) / 2.0  # (B, S, heads, T, T); sqrt(d) = 2
    scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ split(v)).transpose(-2, -3).flatten(-2)  # (B, S, T, width)
    torch.testing.assert_close(attn(x), attn.to_out(out).permute(0, 2, 1, 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [1, 8, 32, 33])
def test_sampling_attention_equals_the_fused_kernel(causal, length):
    q, k, v = (torch.randn(3, 2, length, 8) for _ in range(3))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with torch.no_grad():  # short sequences: explicit matmuls on the CPU
        torch.testing.assert_close(attend(q, k, v, causal=causal), fused, rtol=1e-5, atol=1e-6)


def test_spatial_attention_never_mixes_frames_and_temporal_never_mixes_positions():
    spatial = randomize(AxisAttention(width=8, heads=2, axis="spatial"))
    temporal = randomize(AxisAttention(width=8, heads=2, axis="temporal", rope=True))
    x = torch.randn(1, 4, 6, 8)
    changed = x.clone()
    changed[:, 2, 3] += 1.0  # frame 2, patch 3
    moved = (spatial(changed) - spatial(x)).abs().amax(dim=(0, 3))  # (T, S)
    assert moved[2].min() > 0 and moved[[0, 1, 3]].max() == 0
    moved = (temporal(changed) - temporal(x)).abs().amax(dim=(0, 3))
    assert moved[:, 3].max() > 0 and moved[:, [0, 1, 2, 4, 5]].max() == 0


def test_a_new_block_is_the_identity_and_a_trained_one_is_not():
    for axes in [("spatial",), ("temporal",), ("spatial", "temporal")]:
        block = DiTBlock(width=16, heads=2, axes=axes, causal=True, rope=True)
        x, cond = torch.randn(2, 3, 4, 16), torch.randn(2, 16)
        assert torch.equal(block(x, cond), x)  # adaLN-Zero: every gate starts at 0
        randomize(block.modulation)
        assert (block(x, cond) - x).abs().max() > 1e-3


# -- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [1, 2, 3])
@pytest.mark.parametrize(("p", "pt", "shape"), [(1, 1, (2, 4, 3, 4, 6)), (2, 1, (1, 4, 4, 8, 8)),
                                                (4, 2, (2, 4, 4, 8, 12)), (2, 2, (1, 4, 6, 4, 4))])
def test_output_matches_input_shape_for_every_variant_and_patch_size(variant, p, pt, shape):
    dit = randomize(tiny_dit(variant=variant, patch_size=p, temporal_patch_size=pt))
    x = torch.randn(*shape)
    out = dit(x, torch.randint(0, 1000, (shape[0],)), torch.randn(shape[0], dit.emb_dim))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_variants_order_their_blocks_as_latte_does():
    assert [b.axes for b in tiny_dit(variant=1).blocks] == [("spatial",), ("temporal",)] * 2
    assert [b.axes for b in tiny_dit(variant=2).blocks] == [("spatial",)] * 2 + [("temporal",)] * 2
    assert [b.axes for b in tiny_dit(variant=3).blocks] == [("spatial", "temporal")] * 4


def test_the_untrained_network_predicts_zero():
    dit = tiny_dit()
    out = dit(torch.randn(2, 4, 4, 8, 8), torch.tensor([10, 900]), torch.randn(2, dit.emb_dim))
    assert torch.equal(out, torch.zeros_like(out))  # the zero-initialised final layer
    tokens = dit.patch_embed(torch.randn(2, 4, 4, 8, 8))
    cond = torch.randn(2, dit.emb_dim)
    for block in dit.blocks:
        assert torch.equal(block(tokens, cond), tokens)


@pytest.mark.parametrize("variant", [1, 2, 3])
@pytest.mark.parametrize("position", ["rope", "sincos", "learned", "none"])
def test_causal_attention_never_lets_a_frame_see_later_frames(variant, position):
    dit = randomize(tiny_dit(variant=variant, temporal_position=position, max_frames=8))
    x, t, emb = torch.randn(2, 4, 5, 4, 4), torch.tensor([5, 600]), torch.randn(2, 32)
    base = dit(x, t, emb)
    for k in range(5):
        changed = x.clone()
        changed[:, :, k] += torch.randn_like(changed[:, :, k])
        out = dit(changed, t, emb)
        torch.testing.assert_close(out[:, :, :k], base[:, :, :k], rtol=0, atol=1e-6)
        assert (out[:, :, k:] - base[:, :, k:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4  # not vacuous


def test_causality_holds_between_temporal_patches():
    dit = randomize(tiny_dit(temporal_patch_size=2))
    x, t = torch.randn(1, 4, 6, 4, 4), torch.tensor([300])
    base = dit(x, t)
    changed = x.clone()
    changed[:, :, 3] += 1.0  # the second frame of the second temporal patch
    out = dit(changed, t)
    torch.testing.assert_close(out[:, :, :2], base[:, :, :2], rtol=0, atol=1e-6)
    assert (out[:, :, 2] - base[:, :, 2]).abs().max() > 1e-4  # its patch partner sees it


def test_without_causality_earlier_frames_see_later_ones():
    dit = randomize(tiny_dit(causal=False))
    x, t = torch.randn(1, 4, 4, 4, 4), torch.tensor([300])
    changed = x.clone()
    changed[:, :, 3] += 1.0
    assert (dit(changed, t)[:, :, 0] - dit(x, t)[:, :, 0]).abs().max() > 1e-4


def test_time_and_condition_embeddings_reach_the_output():
    dit = randomize(tiny_dit())
    x, t = torch.randn(2, 4, 2, 4, 4), torch.tensor([5, 600])
    emb = torch.randn(2, dit.emb_dim)
    out = dit(x, t, emb)
    assert (dit(x, t + 1, emb) - out).abs().max() > 1e-4
    assert (dit(x, t, emb + 0.5) - out).abs().max() > 1e-4
    torch.testing.assert_close(dit(x, t, None), dit(x, t, torch.zeros_like(emb)))
    torch.testing.assert_close(dit(x, torch.tensor(5), emb)[0], out[0])  # a scalar t is every clip's


def test_the_known_frames_input_conditions_the_prediction():
    dit = randomize(tiny_dit(known_frames=0.5))
    x, t = torch.randn(2, 4, 4, 4, 4), torch.tensor([5, 600])
    known = torch.zeros(2, 5, 4, 4, 4)
    assert (dit(x, t, known=known) - dit(x, t)).abs().max() == 0  # nothing given = zeros
    known[:, :4, :2], known[:, 4, :2] = torch.randn(2, 4, 2, 4, 4), 1.0
    assert (dit(x, t, known=known) - dit(x, t)).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"known must be \(B, c \+ 1, T, H, W\)"):
        dit(x, t, known=known[:, :4])
    with pytest.raises(ValueError, match="without known_frames"):
        tiny_dit()(x, t, known=known)


def test_a_state_dict_saved_and_loaded_gives_the_same_network(tmp_path):
    dit = randomize(tiny_dit(temporal_position="learned", max_frames=4, known_frames=0.5))
    save_file(dit.state_dict(), tmp_path / "dit.safetensors")
    again = tiny_dit(temporal_position="learned", max_frames=4, known_frames=0.5)
    again.load_state_dict(load_file(tmp_path / "dit.safetensors"))
    x, t = torch.randn(1, 4, 4, 4, 4), torch.tensor([42])
    assert torch.equal(again(x, t), dit(x, t))


def test_registry_and_config_forms_build_the_same_network():
    registered = create("denoiser", "dit3d", in_channels=4, width=32, depth=4, heads=4)
    direct = DiT3D(DiT3D.Config(in_channels=4, width=32, depth=4, heads=4))
    assert isinstance(registered, DiT3D)
    assert {k: v.shape for k, v in registered.state_dict().items()} == {k: v.shape for k, v in direct.state_dict().items()}


# Latte, Ma et al. 2024, Table 1 (variant 1, 4 latent channels in, patch size 2).
LATTE_PARAMETERS = {"S": 32.59e6, "B": 129.54e6, "L": 456.81e6, "XL": 673.68e6}


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
def test_presets_have_the_published_parameter_counts(size):
    with torch.device("meta"):  # no memory for XL's 674 M parameters
        dit = DiT3D(in_channels=4, size=size)
    count = sum(p.numel() for p in dit.parameters())
    assert abs(count / LATTE_PARAMETERS[size] - 1) < 0.02, count
    width, depth, heads = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}[size]
    assert (dit.width, len(dit.blocks), dit.blocks[0].attention[0].heads) == (width, depth, heads)


def test_fields_override_the_preset():
    dit = DiT3D(in_channels=4, size="B", depth=2)
    assert dit.width == 768 and len(dit.blocks) == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"width": 30, "heads": 4}, "not divisible by heads"),
    ({"width": 36, "heads": 12}, "even head width"),
    ({"width": 18, "heads": 2, "temporal_position": "none"}, "divisible by 4"),
    ({"depth": 3}, "needs an even depth"),
    ({"patch_size": 3}, "patch_size"),
    ({"variant": 4}, "variant"),
    ({"temporal_position": "alibi"}, "temporal_position"),
])
def test_bad_configurations_say_what_is_wrong(change, message):
    with pytest.raises(ValidationError, match=message):
        tiny_dit(**change)


def test_shape_errors_name_the_rule():
    with pytest.raises(ComponentError, match="in_channels"):
        DiT3D(width=32, depth=2, heads=4)
    dit = tiny_dit(patch_size=4, temporal_patch_size=2)
    with pytest.raises(ValueError, match="divisible by 4, got 6x8"):
        dit(torch.randn(1, 4, 2, 6, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="frame count divisible by it, got 3"):
        dit(torch.randn(1, 4, 3, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="built for 4 input channels"):
        dit(torch.randn(1, 3, 2, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="holds 2 temporal tokens, got 3"):
        tiny_dit(temporal_position="learned", max_frames=2)(torch.randn(1, 4, 3, 4, 4), torch.tensor([1]))


def test_attention_runs_through_the_fused_kernel(monkeypatch):
    calls = []
    fused = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return fused(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    dit = tiny_dit(variant=3)
    dit(torch.randn(1, 4, 2, 4, 4), torch.tensor([1]))  # training: always the fused kernel
    assert calls == [False, True] * 4  # per block: spatial, then causal temporal
    calls.clear()
    with torch.no_grad():
        dit(torch.randn(1, 4, 2, 4, 4), torch.tensor([1]))  # sampling: 4 and 2 tokens, explicit
        assert calls == []
        dit(torch.randn(1, 4, 2, 16, 16), torch.tensor([1]))  # 64 tokens per frame: fused again
        assert calls == [False] * 4


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_a_tiny_training_run_lowers_the_loss(prediction):
    torch.manual_seed(0)
    schedule = create("schedule", "ddpm", num_train_steps=100)
    dit = tiny_dit(prediction_type=prediction, width=32, depth=2, heads=2)
    assert dit.prediction_type == prediction
    x0 = torch.randn(1, 4, 2, 4, 4).repeat(8, 1, 1, 1, 1) * 0.5 + torch.linspace(-1, 1, 4).view(1, 1, 1, 1, 4)
    optimiser = torch.optim.AdamW(dit.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        t = torch.randint(0, 100, (8,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        target = schedule.training_target(x0, noise, t, prediction)
        loss = F.mse_loss(dit(schedule.add_noise(x0, noise, t), t), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert math.isfinite(last)

"""The factorized causal 3D U-Net and its blocks."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from vqvdm_core import create
from vqvdm_core.errors import ComponentError
from vqvdm_plugins.unet3d import UNet3D
from vqvdm_plugins.unet3d.padding import TemporalReplicateConv3d
from vqvdm_plugins.unet3d.residual_block import ResidualBlock
from vqvdm_plugins.unet3d.spatial_attention import SpatialAttention
from vqvdm_plugins.unet3d.temporal_attention import TemporalAttention, rotary_embedding


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Replace every weight (zero-initialised output layers included) with random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module


def tiny_unet(**overrides) -> UNet3D:
    config = dict(in_channels=4, channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_head_dim=4)
    config.update(overrides)
    return UNet3D(**config)


# -- temporal attention -------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["rope", "none"])
def test_temporal_attention_is_causal(position):
    attn = randomize(TemporalAttention(channels=8, heads=2, position=position)).eval()
    x = torch.randn(2, 8, 5, 3, 3)
    base = attn(x)
    for k in range(5):
        changed = x.clone()
        changed[:, :, k] += torch.randn_like(changed[:, :, k])
        out = attn(changed)
        # Frames before k cannot see frame k ...
        torch.testing.assert_close(out[:, :, :k], base[:, :, :k], rtol=0, atol=1e-6)
        # ... while frame k and every later frame do (the check is not vacuous).
        for later in range(k, 5):
            assert (out[:, :, later] - base[:, :, later]).abs().max() > 1e-3


def test_temporal_attention_never_mixes_spatial_positions():
    attn = randomize(TemporalAttention(channels=8, heads=2)).eval()
    x = torch.randn(1, 8, 4, 3, 3)
    changed = x.clone()
    changed[:, :, :, 1, 2] += torch.randn(1, 8, 4)
    diff = (attn(changed) - attn(x)).abs().amax(dim=(0, 1, 2))  # (H, W)
    assert diff[1, 2] > 1e-3
    diff[1, 2] = 0
    assert diff.max() < 1e-6


def test_temporal_attention_matches_masked_softmax_reference():
    attn = randomize(TemporalAttention(channels=8, heads=2, position="none")).eval()
    x = torch.randn(1, 8, 4, 2, 2)
    out = attn(x)
    # Reference: per position, explicit softmax(q k^T / sqrt(d)) with -inf above the diagonal.
    w_qkv, w_out, b_out = attn.to_qkv.weight, attn.to_out.weight, attn.to_out.bias
    heads, d = 2, 4
    for i in range(2):
        for j in range(2):
            seq = x[0, :, :, i, j].T  # (T, C)
            mean, var = seq.mean(dim=1, keepdim=True), seq.var(dim=1, unbiased=False, keepdim=True)
            normed = (seq - mean) / torch.sqrt(var + attn.norm.eps) * attn.norm.weight + attn.norm.bias
            q, k, v = (normed @ w_qkv.T).split(8, dim=1)
            result = []
            for h in range(heads):
                qh, kh, vh = (m[:, h * d:(h + 1) * d] for m in (q, k, v))
                scores = qh @ kh.T / math.sqrt(d)
                scores = scores.masked_fill(torch.triu(torch.ones(4, 4, dtype=torch.bool), 1), float("-inf"))
                result.append(scores.softmax(dim=1) @ vh)
            expected = torch.cat(result, dim=1) @ w_out.T + b_out + seq  # residual
            torch.testing.assert_close(out[0, :, :, i, j].T, expected, rtol=1e-4, atol=1e-5)


def test_rotary_scores_depend_only_on_frame_offset():
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)  # the same query at frames 0..5
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    scores = rotary_embedding(q) @ rotary_embedding(k).transpose(-1, -2)  # (1, 1, 6, 6)
    for offset in range(-5, 6):
        diagonal = torch.diagonal(scores[0, 0], offset=offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(torch.diagonal(scores[0, 0], 0)[0], torch.diagonal(scores[0, 0], 1)[0])


# -- spatial attention --------------------------------------------------------------------------


def test_spatial_attention_never_mixes_frames():
    attn = randomize(SpatialAttention(channels=8, heads=2)).eval()
    x = torch.randn(2, 8, 4, 3, 3)
    base = attn(x)
    for k in range(4):
        changed = x.clone()
        changed[:, :, k, 0, 0] += torch.randn(2, 8)  # one position of frame k
        out = attn(changed)
        for frame in range(4):
            delta = (out[:, :, frame] - base[:, :, frame]).abs()
            if frame == k:
                assert delta[:, :, 1:, 1:].max() > 1e-3  # other positions of frame k see the change
            else:
                assert delta.max() < 1e-6


# -- residual block and padding -----------------------------------------------------------------


def test_temporal_padding_replicates_edge_frames():
    conv = randomize(TemporalReplicateConv3d(3, 5))
    still = torch.randn(1, 3, 1, 6, 6).expand(1, 3, 4, 6, 6)  # the same frame four times
    out = conv(still)
    # Replicated edge frames make a still clip's output identical at every frame; zero padding
    # would darken the first and last frames.
    for t in range(1, 4):
        torch.testing.assert_close(out[:, :, t], out[:, :, 0], rtol=1e-5, atol=1e-5)
    zero_padded = nn.functional.conv3d(still, conv.weight, conv.bias, padding=1)
    assert (zero_padded[:, :, 0] - zero_padded[:, :, 1]).abs().max() > 1e-3


def test_residual_block_adds_embedding_between_convolutions():
    block = randomize(ResidualBlock(in_channels=4, out_channels=8, emb_dim=6)).eval()
    x = torch.randn(2, 4, 3, 4, 4)
    emb = torch.randn(2, 6)
    out = block(x, emb)
    assert out.shape == (2, 8, 3, 4, 4)
    # Reference: the embedding is projected and added after the first convolution.
    act = nn.functional.silu
    h = block.conv1(act(block.norm1(x))) + block.emb_proj(emb)[:, :, None, None, None]
    expected = block.skip(x) + block.conv2(act(block.norm2(h)))
    torch.testing.assert_close(out, expected)
    assert (block(x, emb + 1.0) - out).abs().max() > 1e-3


def test_new_residual_block_is_identity_on_its_skip_path():
    block = ResidualBlock(in_channels=8, out_channels=8, emb_dim=6)
    x = torch.randn(1, 8, 2, 4, 4)
    torch.testing.assert_close(block(x, torch.randn(1, 6)), x)


# -- the U-Net ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mults", "shape"),
    [((1, 2), (2, 4, 4, 8, 8)), ((1, 2, 4), (1, 4, 4, 16, 16)), ((1, 2, 2), (3, 4, 1, 4, 12)),
     ((1,), (2, 4, 3, 5, 7))],
)
def test_unet_output_matches_input_shape(mults, shape):
    unet = randomize(tiny_unet(channel_mults=mults)).eval()
    x = torch.randn(*shape)
    t = torch.randint(0, 1000, (shape[0],))
    out = unet(x, t, torch.randn(shape[0], unet.emb_dim))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_skip_connections_carry_every_down_block_output():
    unet = tiny_unet(channel_mults=(1, 2, 4), num_res_blocks=2)
    # Down outputs (widths 8, 16, 32): input conv 8 | level 0: 8, 8, down 8 | level 1: 16, 16,
    # down 16 | level 2: 32, 32. The up path pops them in reverse, one per block, and concatenates
    # each with the running features (32 after the middle block).
    up_blocks = [m for m in unet.up if hasattr(m, "res")]
    assert [b.res.conv1.in_channels for b in up_blocks] == [
        32 + 32, 32 + 32, 32 + 16,   # level 2
        32 + 16, 16 + 16, 16 + 8,    # level 1
        16 + 8, 8 + 8, 8 + 8,        # level 0
    ]
    assert [b.res.conv1.out_channels for b in up_blocks] == [32] * 3 + [16] * 3 + [8] * 3
    x = torch.randn(1, 4, 2, 8, 8)
    assert unet(x, torch.tensor([3])).shape == x.shape


def test_unet_uses_time_and_condition_embeddings():
    unet = randomize(tiny_unet()).eval()
    x = torch.randn(2, 4, 2, 4, 4)
    t = torch.tensor([5, 600])
    emb = torch.randn(2, unet.emb_dim)
    out = unet(x, t, emb)
    assert (unet(x, t + 1, emb) - out).abs().max() > 1e-4
    assert (unet(x, t, emb + 0.5) - out).abs().max() > 1e-4
    torch.testing.assert_close(unet(x, t, None), unet(x, t, torch.zeros_like(emb)))


def test_unet_rejects_frame_size_not_divisible_by_its_levels():
    unet = tiny_unet(channel_mults=(1, 2, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        unet(torch.randn(1, 4, 2, 6, 8), torch.tensor([1]))


def test_unet_without_in_channels_says_which_field_to_set():
    with pytest.raises(ComponentError, match="in_channels"):
        UNet3D(channels=8)


def test_unet_config_forms_and_registry_build_the_same_network():
    direct = UNet3D(UNet3D.Config(in_channels=4, channels=8, channel_mults=(1, 2), num_res_blocks=1))
    keywords = tiny_unet(attention_head_dim=32)
    registered = create("denoiser", "unet3d", in_channels=4, channels=8, channel_mults=[1, 2], num_res_blocks=1)
    nets = (direct, keywords, registered)
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in nets]
    assert shapes[0] == shapes[1] == shapes[2]  # the same layers, named and shaped alike
    assert isinstance(registered, UNet3D)
    randomize(direct)
    for net in (keywords, registered):
        net.load_state_dict(direct.state_dict())
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        reference = direct(x, t)
        for net in (keywords, registered):
            torch.testing.assert_close(net(x, t), reference)  # and wired the same way


def test_unet_declares_its_prediction_type():
    assert tiny_unet().prediction_type == "epsilon"
    assert tiny_unet(prediction_type="v").prediction_type == "v"
    with pytest.raises(ValidationError):
        tiny_unet(prediction_type="score")


def test_unet_attention_levels_choose_where_attention_runs():
    unet = tiny_unet(channel_mults=(1, 2, 4), attention_levels=(2,))
    down = [m for m in unet.down if hasattr(m, "res")]
    assert [m.spatial is not None for m in down] == [False, False, True]
    assert unet.middle.temporal is not None
    with pytest.raises(ValidationError, match="out of range"):
        tiny_unet(attention_levels=(3,))


def test_unet_attention_heads_follow_head_dim():
    unet = tiny_unet(channels=16, channel_mults=(1, 2), attention_head_dim=8)
    down = [m for m in unet.down if hasattr(m, "res")]
    assert [m.temporal.heads for m in down] == [2, 4]
    fixed = tiny_unet(channels=16, channel_mults=(1, 2), attention_heads=2)
    assert {m.spatial.heads for m in fixed.down if hasattr(m, "res")} == {2}

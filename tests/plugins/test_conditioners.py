"""Time-step, FPS and class embeddings: Eq. 6, separate weights, null class and condition dropout."""

from __future__ import annotations

import math

import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import NO_LABEL
from vqvdm_plugins.conditioners import ClassConditioner, FPSConditioner
from vqvdm_plugins.embeddings import SinusoidalEmbedding, sinusoidal_encoding
from vqvdm_plugins.unet3d import UNet3D


def test_sinusoidal_encoding_matches_the_transformer_formula():
    values = torch.tensor([0.0, 7.5, 29.97, 999.0])
    dim = 6
    got = sinusoidal_encoding(values, dim)
    for row, v in enumerate(values.tolist()):
        freqs = [10_000 ** (-i / 3) for i in range(3)]
        expected = [math.cos(v * f) for f in freqs] + [math.sin(v * f) for f in freqs]
        torch.testing.assert_close(got[row], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_fps_embedding_is_eq6_on_continuous_values():
    fps = FPSConditioner(emb_dim=8, encoding_dim=4)
    values = torch.tensor([7.5, 8.0, 29.97])
    out = fps(values)
    lin1, lin2 = fps.embedding.mlp[0], fps.embedding.mlp[2]
    pe = sinusoidal_encoding(values, 4)
    expected = lin2(torch.nn.functional.silu(lin1(pe)))  # Linear(SiLU(Linear(PE(fps))))
    torch.testing.assert_close(out, expected)
    assert (out[0] - out[1]).abs().max() > 1e-4  # 7.5 and 8 FPS are told apart


def test_fps_and_time_embeddings_have_separate_weights():
    unet = UNet3D(in_channels=4, channels=8, channel_mults=(1,), num_res_blocks=1)
    fps = FPSConditioner(emb_dim=unet.emb_dim, encoding_dim=8)
    time_params = {id(p) for p in unet.time_embed.parameters()}
    fps_params = {id(p) for p in fps.parameters()}
    assert time_params and fps_params and not time_params & fps_params
    # Same form: with the time embedding's weights copied in, FPS v embeds exactly like step v.
    values = torch.tensor([3.0, 25.0])
    assert not torch.allclose(fps(values), unet.time_embed(values))
    fps.embedding.load_state_dict(unet.time_embed.state_dict())
    torch.testing.assert_close(fps(values), unet.time_embed(values))
    # Training the FPS weights leaves the time embedding untouched.
    before = unet.time_embed(values).detach().clone()
    with torch.no_grad():
        for p in fps.parameters():
            p.add_(1.0)
    torch.testing.assert_close(unet.time_embed(values), before)


def test_fps_is_never_dropped_by_default():
    fps = FPSConditioner(emb_dim=4)
    assert fps.dropout == 0.0 and not fps.guided and FPSConditioner.field == "fps"
    values = torch.full((10_000,), 24.0)
    assert torch.equal(fps.drop(values, generator=torch.Generator().manual_seed(0)), values)


def test_fps_default_is_used_only_when_configured():
    assert FPSConditioner(emb_dim=4).default(3, device="cpu") is None
    torch.testing.assert_close(FPSConditioner(emb_dim=4, default_fps=7.5).default(2, device="cpu"),
                               torch.tensor([7.5, 7.5]))


@pytest.mark.parametrize("rho", [0.5, 0.2])
def test_class_dropout_rate_matches_rho(rho):
    cond = ClassConditioner(num_classes=10, emb_dim=4, dropout=rho)
    n = 20_000
    labels = torch.arange(n) % 10
    dropped = cond.drop(labels, generator=torch.Generator().manual_seed(1))
    rate = (dropped == cond.null_index).float().mean().item()
    sigma = math.sqrt(rho * (1 - rho) / n)
    assert abs(rate - rho) < 4 * sigma
    kept = dropped != cond.null_index
    assert torch.equal(dropped[kept], labels[kept])  # kept labels are unchanged


def test_class_dropout_extremes():
    labels = torch.arange(100) % 5
    never = ClassConditioner(num_classes=5, emb_dim=4, dropout=0.0)
    always = ClassConditioner(num_classes=5, emb_dim=4, dropout=1.0)
    assert torch.equal(never.drop(labels), labels)
    assert (always.drop(labels) == 5).all()


def test_class_conditioner_defaults_follow_the_paper():
    cond = ClassConditioner(num_classes=101, emb_dim=4)
    assert cond.dropout == 0.5 and cond.guided and ClassConditioner.field == "label"
    assert cond.embedding.num_embeddings == 102  # classes + the null class
    torch.testing.assert_close(cond.null(3, device="cpu"), torch.tensor([101, 101, 101]))


def test_missing_label_maps_to_the_null_class():
    cond = ClassConditioner(num_classes=3, emb_dim=4)
    out = cond(torch.tensor([NO_LABEL, 3, 0]))
    torch.testing.assert_close(out[0], cond.embedding.weight[3])
    torch.testing.assert_close(out[1], cond.embedding.weight[3])
    torch.testing.assert_close(out[2], cond.embedding.weight[0])


def test_class_conditioner_rejects_out_of_range_labels():
    cond = ClassConditioner(num_classes=3, emb_dim=4)
    with pytest.raises(ValueError, match="0..2"):
        cond(torch.tensor([4]))


def test_unwired_conditioners_say_which_field_to_set():
    with pytest.raises(ComponentError, match="num_classes"):
        ClassConditioner(emb_dim=4)
    with pytest.raises(ComponentError, match="emb_dim"):
        ClassConditioner(num_classes=4)
    with pytest.raises(ComponentError, match="emb_dim"):
        FPSConditioner()


def test_conditioners_are_registered():
    assert isinstance(create("conditioner", "fps", emb_dim=4), FPSConditioner)
    assert isinstance(create("conditioner", "class", emb_dim=4, num_classes=2), ClassConditioner)


def test_sinusoidal_embedding_accepts_integer_steps():
    emb = SinusoidalEmbedding(encoding_dim=6, out_dim=5)
    out = emb(torch.tensor([0, 999]))
    assert out.shape == (2, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, emb(torch.tensor([0.0, 999.0])))


def test_fps_dropout_replaces_the_fps_by_null_fps_at_its_rate():
    fps = FPSConditioner(emb_dim=8, dropout=0.25, null_fps=-1.0)
    values = torch.full((20000,), 12.0)
    dropped = fps.drop(values, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {-1.0, 12.0}
    assert abs(float((dropped == -1.0).float().mean()) - 0.25) < 0.01
    assert torch.equal(fps.null(3, device="cpu"), torch.full((3,), -1.0))
    never = FPSConditioner(emb_dim=8)  # the paper never drops the FPS
    assert torch.equal(never.drop(values, generator=torch.Generator().manual_seed(0)), values)

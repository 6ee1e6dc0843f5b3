"""Classifier-free guidance (Eq. 9) and no guidance."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from vqvdm_core import create
from vqvdm_core.interfaces import Denoiser
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_plugins.guidance import ClassifierFreeGuidance, NoGuidance


class RecordingDenoiser(Denoiser):
    """A non-linear toy denoiser that records the batch size of every call."""

    class Config(ComponentConfig):
        pass

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.proj = nn.Linear(4, 3)
        self.batch_sizes: list[int] = []

    @property
    def prediction_type(self):
        return "epsilon"

    @property
    def emb_dim(self) -> int:
        return 4

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        self.batch_sizes.append(x_t.shape[0])
        shift = self.proj(emb) if emb is not None else torch.zeros(x_t.shape[0], 3)
        return torch.tanh(x_t * (1 + t[:, None].float() / 100) + shift)


def inputs():
    torch.manual_seed(0)
    return torch.randn(5, 3), torch.randint(0, 1000, (5,)), torch.randn(5, 4), torch.randn(5, 4)


def test_cfg_equals_eq9_in_one_batched_forward():
    den = RecordingDenoiser()
    x, t, cond, uncond = inputs()
    w = 3.0
    guided = ClassifierFreeGuidance(scale=w).predict(den, x, t, cond=cond, uncond=uncond)
    assert den.batch_sizes == [10]  # conditional and unconditional in one forward
    with torch.no_grad():
        eps_c, eps_u = den(x, t, cond), den(x, t, uncond)
    torch.testing.assert_close(guided, w * (eps_c - eps_u) + eps_u)


def test_cfg_scale_argument_overrides_the_configured_scale():
    den = RecordingDenoiser()
    x, t, cond, uncond = inputs()
    cfg = ClassifierFreeGuidance(scale=3.0)
    eps_c, eps_u = den(x, t, cond), den(x, t, uncond)
    torch.testing.assert_close(cfg.predict(den, x, t, cond=cond, uncond=uncond, scale=1.5),
                               1.5 * (eps_c - eps_u) + eps_u)


def test_cfg_skips_the_unconditional_pass_when_it_cannot_matter():
    den = RecordingDenoiser()
    x, t, cond, uncond = inputs()
    at_one = ClassifierFreeGuidance(scale=1.0).predict(den, x, t, cond=cond, uncond=uncond)
    no_uncond = ClassifierFreeGuidance(scale=4.0).predict(den, x, t, cond=cond, uncond=None)
    assert den.batch_sizes == [5, 5]
    torch.testing.assert_close(at_one, den(x, t, cond))
    torch.testing.assert_close(no_uncond, den(x, t, cond))
    at_zero = ClassifierFreeGuidance(scale=0.0).predict(den, x, t, cond=cond, uncond=uncond)
    torch.testing.assert_close(at_zero, den(x, t, uncond))


def test_no_guidance_is_one_conditional_forward():
    den = RecordingDenoiser()
    x, t, cond, uncond = inputs()
    out = NoGuidance().predict(den, x, t, cond=cond, uncond=uncond, scale=7.0)
    assert den.batch_sizes == [5]
    torch.testing.assert_close(out, den(x, t, cond))
    assert NoGuidance().scale == 1.0


def test_guidance_components_are_registered_with_their_defaults():
    cfg = create("guidance", "cfg")
    assert isinstance(cfg, ClassifierFreeGuidance) and cfg.scale == 2.0
    assert create("guidance", "cfg", scale=5.0).scale == 5.0
    assert isinstance(create("guidance", "none"), NoGuidance)
    with pytest.raises(Exception, match="scale"):
        create("guidance", "cfg", scale=-1.0)

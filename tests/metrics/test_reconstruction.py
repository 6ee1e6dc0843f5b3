"""PSNR, SSIM and LPIPS of reconstructions: closed forms, an independent SSIM, offline LPIPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from vqvdm_core.errors import MissingFileError
from vqvdm_plugins.metrics.reconstruction import ReconstructionMetrics, build_lpips, psnr_per_frame, ssim_per_frame


@pytest.fixture
def no_vgg(tmp_path, monkeypatch):
    """An empty torch hub and weight cache: the VGG16 file is nowhere."""
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VQVDM_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("VQVDM_LPIPS_TRUNK", raising=False)
    yield tmp_path
    torch.hub.set_dir(old_hub)


def video(seed: int, shape=(2, 3, 3, 16, 16)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_identical_clips_give_infinite_psnr_and_unit_ssim():
    x = video(0)
    metric = ReconstructionMetrics(lpips=False)
    metric.update(real=x, fake=x.clone())
    out = metric.compute()
    assert out["psnr"] == math.inf
    assert out["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert "lpips" not in out


def test_constant_offset_gives_the_closed_form_psnr():
    x = video(1) * 0.5  # room for the offset inside [-1, 1]
    delta = 0.1  # in [-1, 1] units = 0.05 in [0, 1]
    psnr = psnr_per_frame(x, x + delta)
    assert psnr.shape == (2, 3)
    torch.testing.assert_close(psnr, torch.full((2, 3), 10 * math.log10(1 / 0.05 ** 2), dtype=torch.float64))


def test_ssim_of_constant_frames_is_the_luminance_term():
    a, b = 0.3, 0.7  # [0, 1] values
    real = torch.full((1, 3, 2, 12, 12), 2 * a - 1)
    fake = torch.full((1, 3, 2, 12, 12), 2 * b - 1)
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances and covariance are 0
    torch.testing.assert_close(ssim_per_frame(real, fake), torch.full((1, 2), expected, dtype=torch.float64))


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM of one [0, 1] image channel (11x11 Gaussian, sigma 1.5, valid region)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def filt(z):
        return scipy.signal.correlate2d(z, w, mode="valid")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_ssim_matches_an_independent_per_channel_implementation():
    real = video(2, (1, 3, 2, 20, 18))
    fake = (real + 0.3 * video(3, (1, 3, 2, 20, 18))).clamp(-1, 1)
    ours = ssim_per_frame(real, fake)
    x, y = ((real.double() + 1) / 2).numpy(), ((fake.double() + 1) / 2).numpy()
    for t in range(2):
        expected = np.mean([reference_ssim(x[0, c, t], y[0, c, t]) for c in range(3)])
        assert float(ours[0, t]) == pytest.approx(expected, rel=1e-10)


def test_ssim_refuses_frames_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_frame(video(0, (1, 3, 1, 8, 8)), video(1, (1, 3, 1, 8, 8)))


def test_pretrained_lpips_without_the_vgg_file_names_it(no_vgg):
    with pytest.raises(MissingFileError) as info:
        ReconstructionMetrics(lpips=True, lpips_pretrained=True)
    text = str(info.value)
    assert "vgg16-397923af.pth" in text and "VGG16" in text
    assert str(no_vgg / "hub" / "checkpoints" / "vgg16-397923af.pth") in text


def test_lpips_trunk_is_loaded_from_a_torchvision_style_file(no_vgg):
    random_trunk = build_lpips(pretrained=False)
    g = torch.Generator().manual_seed(5)
    fake_file = {}
    for slice_ in random_trunk.net.children():
        for index, layer in slice_.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                fake_file[f"features.{index}.weight"] = torch.randn(layer.weight.shape, generator=g)
                fake_file[f"features.{index}.bias"] = torch.randn(layer.bias.shape, generator=g)
    path = no_vgg / "hub" / "checkpoints" / "vgg16-397923af.pth"
    path.parent.mkdir(parents=True)
    torch.save(fake_file, path)
    model = build_lpips(pretrained=True)
    torch.testing.assert_close(getattr(model.net.slice5, "28").weight, fake_file["features.28.weight"])
    torch.testing.assert_close(getattr(model.net.slice1, "0").bias, fake_file["features.0.bias"])


def test_lpips_with_random_trunk_is_deterministic_and_flagged_not_comparable():
    x = video(6, (1, 3, 2, 32, 32))
    y = (x + 0.2 * video(7, (1, 3, 2, 32, 32))).clamp(-1, 1)
    values = []
    for _ in range(2):
        metric = ReconstructionMetrics(lpips_pretrained=False)
        metric.update(real=x, fake=x)
        same = metric.compute()["lpips"]
        metric.reset()
        metric.update(real=x, fake=y)
        out = metric.compute()
        values.append(out["lpips"])
    assert same == pytest.approx(0.0, abs=1e-7)
    assert values[0] > 0 and values[0] == values[1]
    assert out["lpips_random_trunk"] == 1.0
    assert "NOT comparable" in metric.protocol()["lpips_note"]

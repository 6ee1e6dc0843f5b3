"""FVD/KVD metrics end to end with a small feature network: values, counts and real-set caching."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from vqvdm_core.errors import UserError
from vqvdm_plugins.metrics.fvd import FVD
from vqvdm_plugins.metrics.kvd import KVD
from vqvdm_plugins.metrics.frechet import fit_gaussian, frechet_distance
from vqvdm_plugins.metrics.mmd import polynomial_mmd
from vqvdm_plugins.metrics.feature_networks import prepare_clips


class CountingFeatures(nn.Module):
    """A fixed random projection of per-frame colour statistics, counting its forwards."""

    def __init__(self, seed: int = 0, dim: int = 6):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(6, dim, generator=g), requires_grad=False)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        stats = torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)  # (B, 6)
        return stats @ self.proj


def clips(n: int, seed: int, offset: float = 0.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 4, 8, 8, generator=g) * 1.2 - 0.6 + offset).clamp(-1, 1)


SMALL = dict(resolution=8, num_frames=4, batch_size=4)


def test_fvd_equals_frechet_distance_of_the_network_features_and_respects_max_counts():
    net = CountingFeatures()
    metric = FVD(network=net, max_real=10, max_fake=12, **SMALL)
    real, fake = clips(14, 0), clips(12, 1, offset=0.2)
    metric.update(real=real[:8])
    metric.update(real=real[8:])  # only 2 of these 6 fit max_real=10
    metric.update(fake=fake)
    out = metric.compute()
    with torch.no_grad():
        f_real, f_fake = net(prepare_clips(real[:10], size=8)), net(prepare_clips(fake, size=8))
    assert out["num_real"] == 10 and out["num_fake"] == 12
    assert out["fvd"] == pytest.approx(frechet_distance(fit_gaussian(f_real), fit_gaussian(f_fake)), rel=1e-6)
    assert out["fvd"] > 0


def test_kvd_full_set_value_equals_polynomial_mmd_of_the_features():
    net = CountingFeatures(seed=1)
    metric = KVD(network=net, subset_size=None, num_subsets=1, **SMALL)
    real, fake = clips(9, 2), clips(7, 3, offset=-0.3)
    metric.update(real=real, fake=fake)
    with torch.no_grad():
        f_real, f_fake = net(prepare_clips(real, size=8)), net(prepare_clips(fake, size=8))
    out = metric.compute()
    assert out["kvd"] == pytest.approx(polynomial_mmd(f_fake, f_real), rel=1e-9)
    assert out["kvd_std"] == 0.0


def test_real_set_features_are_cached_on_disk_and_not_recomputed(tmp_path):
    real, fake = clips(8, 4), clips(8, 5, offset=0.1)
    first_net = CountingFeatures()
    first = FVD(network=first_net, cache_dir=str(tmp_path), reference="toy/val/stride1/4f", **SMALL)
    assert first.needs_real
    first.update(real=real)
    first.update(fake=fake)
    value = first.compute()["fvd"]
    assert first_net.calls == 4  # 2 real + 2 fake batches of 4
    assert list(tmp_path.glob("i3d-reference-*.safetensors"))

    second_net = CountingFeatures()  # same weights, new process-like instance
    second = FVD(network=second_net, cache_dir=str(tmp_path), reference="toy/val/stride1/4f", **SMALL)
    assert not second.needs_real
    second.update(real=real)  # ignored: the reference is known
    second.update(fake=fake)
    assert second_net.calls == 2  # fake batches only
    assert second.compute()["fvd"] == pytest.approx(value, rel=1e-12)
    assert second.protocol()["reference_source"] == "cache"

    # KVD shares the cache (same features and protocol).
    kvd_net = CountingFeatures()
    kvd = KVD(network=kvd_net, cache_dir=str(tmp_path), reference="toy/val/stride1/4f", **SMALL)
    assert not kvd.needs_real


def test_cache_key_separates_real_sets_protocols_and_networks(tmp_path):
    real, fake = clips(8, 6), clips(8, 7)
    base = FVD(network=CountingFeatures(), cache_dir=str(tmp_path), reference="set-a", **SMALL)
    base.update(real=real, fake=fake)
    base.compute()
    assert not FVD(network=CountingFeatures(), cache_dir=str(tmp_path), reference="set-a", **SMALL).needs_real
    assert FVD(network=CountingFeatures(), cache_dir=str(tmp_path), reference="set-b", **SMALL).needs_real
    assert FVD(network=CountingFeatures(seed=9), cache_dir=str(tmp_path), reference="set-a", **SMALL).needs_real
    other = dict(SMALL, spatial="center_crop")
    assert FVD(network=CountingFeatures(), cache_dir=str(tmp_path), reference="set-a", **other).needs_real
    late = FVD(network=CountingFeatures(), cache_dir=str(tmp_path), **SMALL)
    assert late.needs_real and late.set_reference("set-a") and not late.needs_real


def test_reset_keeps_a_frozen_reference_but_forgets_unnamed_real_clips():
    real, fake = clips(8, 8), clips(8, 9)
    named_net = CountingFeatures()
    named = FVD(network=named_net, reference="in-memory", **SMALL)
    named.update(real=real, fake=fake)
    value = named.compute()["fvd"]
    named.reset()
    named.update(real=real, fake=fake)  # real ignored: frozen in memory at compute()
    assert named_net.calls == 2 + 2 + 2 and named.compute()["fvd"] == pytest.approx(value)

    unnamed = FVD(network=CountingFeatures(), **SMALL)
    unnamed.update(real=real, fake=fake)
    unnamed.compute()
    unnamed.reset()
    unnamed.update(fake=fake)
    with pytest.raises(ValueError, match="at least 2 real clips"):
        unnamed.compute()


def test_clip_length_other_than_the_protocol_is_refused():
    metric = FVD(network=CountingFeatures(), resolution=8, num_frames=16)
    with pytest.raises(UserError, match="clips have 4 frames but the protocol needs 16"):
        metric.update(fake=clips(2, 0))


def test_protocol_records_the_settings_and_marks_small_or_custom_runs_not_comparable():
    metric = FVD(network=CountingFeatures(), **SMALL)
    metric.update(real=clips(4, 0), fake=clips(4, 1))
    metric.compute()
    p = metric.protocol()
    assert p["resolution"] == 8 and p["spatial"] == "resize" and p["value_range"] == "symmetric"
    assert p["num_real"] == 4 and p["num_fake"] == 4 and p["paper_comparable"] is False
    assert "custom network" in p["weights"]

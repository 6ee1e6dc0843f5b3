"""The latent Fréchet distance: its pooled statistics, and distances with known answers."""

from __future__ import annotations

import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import UserError
from vqvdm_plugins.metrics.frechet import fit_gaussian, frechet_distance
from vqvdm_plugins.metrics.latent_fd import pooled_statistics


def test_pooled_statistics_are_spatial_means_stds_and_motion_per_channel_and_frame():
    z = torch.randn(3, 4, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    stats = pooled_statistics(z)
    assert stats.shape == (3, 4 * (3 * 5 - 1)) and stats.dtype == torch.float64
    torch.testing.assert_close(stats[1, 4 * 5 + 2 * 5 + 3], z[1, 2, 3].double().std(unbiased=False))
    torch.testing.assert_close(stats[2, 7], z[2, 1, 2].double().mean())
    diff = (z[0, 3, 4] - z[0, 3, 3]).double()
    torch.testing.assert_close(stats[0, 40 + 3 * 4 + 3], diff.std(unbiased=False))
    still = pooled_statistics(z[:, :, :1].expand(-1, -1, 5, -1, -1))
    assert float(still[:, 40:].abs().max()) == 0.0  # a still clip has no motion


def test_two_draws_of_one_distribution_are_close_and_a_shift_costs_its_square():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(2000, 4, 4, 8, 8, generator=g)
    same = torch.randn(2000, 4, 4, 8, 8, generator=g)
    metric = create("metric", "latent_fd")
    metric.update(real=real[:1000], fake=same[:1000])
    metric.update(real=real[1000:], fake=same[1000:])
    close = metric.compute()["latent_fd"]
    metric.reset()
    metric.update(real=real, fake=same + 0.5)  # every spatial mean moves by 0.5, nothing else
    shifted = metric.compute()["latent_fd"]
    reference = frechet_distance(fit_gaussian(pooled_statistics(real)), fit_gaussian(pooled_statistics(same + 0.5)))
    assert shifted == pytest.approx(reference, rel=1e-9)
    assert close < 0.05 and shifted == pytest.approx(4 * 4 * 0.25 + close, abs=0.1)  # 16 means x 0.5^2


def test_latent_fd_refuses_too_few_clips_and_video_input():
    metric = create("metric", "latent_fd", min_clips=16)
    metric.update(real=torch.randn(20, 4, 4, 8, 8), fake=torch.randn(8, 4, 4, 8, 8))
    with pytest.raises(UserError, match="latent_fd has 8 fake clips, fewer than min_clips"):
        metric.compute()
    with pytest.raises(UserError, match="takes latents"):
        metric.update(fake=torch.randn(2, 3, 8, 8))
    assert type(metric).inputs == "latent"

"""Fréchet Video Distance (Unterthiner et al. 2018): Fréchet distance of I3D feature Gaussians.

Protocol of the paper (Sec. 3.1) and the default here: I3D trained on Kinetics-400, 2048 generated
and 2048 real 16-frame clips, frames resized to 224x224, pixels in [-1, 1], 400-d logits as
features (TATS/VideoGPT). Every choice that moves the number is a Config field, recorded by
``protocol()`` next to the value; ``docs/metrics.md`` explains how implementations differ.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .feature_networks import I3DProtocol
from .frechet import fit_gaussian, frechet_distance
from .reference_cache import ReferenceFeatureMetric

__all__ = ["FVD"]


class FVD(ReferenceFeatureMetric):
    """Fréchet Video Distance on I3D (Kinetics-400) features; real-set features can be cached."""

    name: ClassVar[str] = "fvd"

    class Config(I3DProtocol):
        pass

    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        # Unbiased (N-1) covariances as np.cov / TATS; StyleGAN-V divides by N (negligible at 2048).
        return {"fvd": frechet_distance(fit_gaussian(real), fit_gaussian(fake))}

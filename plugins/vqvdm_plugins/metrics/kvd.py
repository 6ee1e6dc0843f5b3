"""Kernel Video Distance: unbiased polynomial-kernel MMD^2 (KID's estimator) on I3D features.

Kernel ``(x.y / D + 1)^3`` (degree 3, gamma 1/D, coef 1), as TATS, DIGAN and StyleGAN-V. The
estimate is averaged over ``num_subsets`` random subsets of ``subset_size`` clips (KID's convention,
100 x 1000); since the estimator is unbiased, its expectation equals TATS's single full-set value
(``num_subsets: 1, subset_size: null``), subsets only add a spread (``kvd_std``). The paper reports
the raw value (Sky Time-lapse: 5.9).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import Tensor

from .feature_networks import I3DProtocol
from .mmd import subset_polynomial_mmd
from .reference_cache import ReferenceFeatureMetric

__all__ = ["KVD"]


class KVD(ReferenceFeatureMetric):
    """Kernel Video Distance (unbiased polynomial MMD) on I3D (Kinetics-400) features."""

    name: ClassVar[str] = "kvd"

    class Config(I3DProtocol):
        subset_size: int | None = Field(1000, ge=2, description="clips per subset (KID: 1000); "
                                        "null: all clips")
        num_subsets: int = Field(100, ge=1, description="random subsets averaged (KID: 100; "
                                 "1 with subset_size null = TATS's full-set value)")
        seed: int = Field(0, description="seed of the subset draws")

    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        c = self.config
        mean, std = subset_polynomial_mmd(fake, real, subset_size=c.subset_size, num_subsets=c.num_subsets,
                                          seed=c.seed)
        return {"kvd": mean, "kvd_std": std}

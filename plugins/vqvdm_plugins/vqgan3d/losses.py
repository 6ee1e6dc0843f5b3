"""The GAN terms of the VQGAN objective: adversarial loss (Eq. 3) and feature matching (Eq. 4).

Eq. 3 is written with ``log D``: the discriminator maximises ``log D(x) + log(1 - D(x_hat))``. We
implement it as the usual binary cross-entropy on logits (``"bce"``, the default) with the
non-saturating generator loss ``-log D(x_hat)``, and offer the hinge loss of taming-transformers and
TATS (``"hinge"``) as an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GanLoss", "adversarial_factor", "discriminator_loss", "feature_matching_loss",
           "generator_adversarial_loss"]

GanLoss = Literal["bce", "hinge"]


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor, kind: GanLoss = "bce") -> Tensor:
    """The discriminator's loss (to minimise): BCE ``-log D(x) - log(1 - D(x_hat))`` or hinge."""
    logits_real, logits_fake = logits_real.float(), logits_fake.float()
    if kind == "bce":
        # -log sigmoid(a) = softplus(-a); -log(1 - sigmoid(a)) = softplus(a)
        return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()
    raise ValueError(f"unknown GAN loss '{kind}' (bce or hinge)")


def generator_adversarial_loss(logits_fake: Tensor, kind: GanLoss = "bce") -> Tensor:
    """The generator's adversarial loss: non-saturating ``-log D(x_hat)`` (bce) or ``-D(x_hat)`` (hinge)."""
    logits_fake = logits_fake.float()
    if kind == "bce":
        return F.softplus(-logits_fake).mean()
    if kind == "hinge":
        return -logits_fake.mean()
    raise ValueError(f"unknown GAN loss '{kind}' (bce or hinge)")


def feature_matching_loss(features_real: Sequence[Tensor], features_fake: Sequence[Tensor]) -> Tensor:
    """Eq. 4: ``sum_i mean ||D_i(x) - D_i(x_hat)||^2`` over the discriminator's intermediate layers.

    The real features are targets (detached): this term trains the generator, never the discriminator.
    """
    if len(features_real) != len(features_fake) or not features_real:
        raise ValueError("feature matching needs the same, non-zero number of real and fake feature maps")
    return torch.stack([F.mse_loss(fake.float(), real.detach().float())
                        for real, fake in zip(features_real, features_fake)]).sum()


def adversarial_factor(step: int, *, start: int, warmup: int = 0) -> float:
    """Weight multiplier of the discriminator terms at ``step``: 0 before ``start``, then a linear
    ramp over ``warmup`` steps (reaching 1 at ``start + warmup - 1``), then 1."""
    if step < start:
        return 0.0
    if warmup <= 0:
        return 1.0
    return min(1.0, (step - start + 1) / warmup)

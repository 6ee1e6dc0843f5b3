"""Tiny trainable models and data sets for the engine tests (importable by subprocess scripts)."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import default_collate

from vqvdm_core.engine import Trainer
from vqvdm_core.interfaces import Trainable, TrainStep
from vqvdm_core.recipe import TrainSettings
from vqvdm_core.runtime.distributed import draw_for_global_batch

DIM = 4


class ToyPairs(torch.utils.data.Dataset):
    """``{"x": (4,), "y": (4,)}`` pairs; with ``augment``, noise drawn from the global torch and
    NumPy generators is added on every read (random augmentation)."""

    def __init__(self, n: int = 16, *, augment: bool = True):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, DIM, generator=g)
        self.y = torch.randn(n, DIM, generator=g) + 2.0
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.x[i].clone(), self.y[i].clone()
        if self.augment:
            x = x + 0.1 * torch.rand(DIM)
            y = y + float(np.random.uniform(-0.05, 0.05))
        return {"x": x, "y": y}


class ToyGAN(nn.Module, Trainable):
    """A linear generator and discriminator trained with the non-saturating GAN losses.

    Per-example losses are averaged, and there is no batch-dependent layer, so a batch's
    gradient is the mean of its halves' gradients.
    """

    def __init__(self, *, noise: bool = False, sleep: float = 0.0, nan_at_step: int | None = None,
                 nan_group: str = "generator", discriminator_start: int = 0):
        super().__init__()
        self.generator = nn.Linear(DIM, DIM)
        self.discriminator = nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))
        self.noise = noise
        self.sleep = sleep
        self.nan_at_step = nan_at_step
        self.nan_group = nan_group
        self.discriminator_start = discriminator_start  # before it: a graph-free zero loss (as vqgan3d)
        self.calls = 0
        self.seen_dtype: torch.dtype | None = None

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generator": list(self.generator.parameters()),
                "discriminator": list(self.discriminator.parameters())}

    def losses(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The two losses on ``batch`` (used by the tests as an independent reference)."""
        x, y = batch["x"], batch["y"]
        if self.noise:  # drawn for the global batch: the same per sample on any number of processes
            x = x + 0.01 * draw_for_global_batch(lambda n: torch.randn(n, *x.shape[1:], device=x.device), x.shape[0])
        fake = self.generator(x)
        self.seen_dtype = fake.dtype
        g_loss = F.softplus(-self.discriminator(fake)).mean()
        d_loss = F.softplus(self.discriminator(fake.detach())).mean() + F.softplus(-self.discriminator(y)).mean()
        return {"generator": g_loss, "discriminator": d_loss}

    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        losses = self.losses(batch)
        logs = {"g_adv": float(losses["generator"].detach()), "d_total": float(losses["discriminator"].detach())}
        if self.nan_at_step is not None and step >= self.nan_at_step:
            losses[self.nan_group] = losses[self.nan_group] * float("nan")
            logs["g_adv" if self.nan_group == "generator" else "d_total"] = float("nan")
        if step < self.discriminator_start:
            losses["discriminator"] = torch.zeros(())
        return TrainStep(losses=losses, logs=logs)


def make_gan(seed: int = 0, **kwargs: Any) -> ToyGAN:
    torch.manual_seed(seed)
    return ToyGAN(**kwargs)


def settings(**overrides: Any) -> TrainSettings:
    """Small, fast training settings (Adam, no clipping, logging every step)."""
    base: dict[str, Any] = dict(steps=4, batch_size=4, grad_accum=1, grad_clip=None, log_every=1,
                                val_every=1000, ckpt_every=1000, optimizer={"name": "adam", "lr": 1e-2})
    base.update(overrides)
    return TrainSettings(**base)


def flat_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def quiet_console() -> Console:
    """A console that writes to memory (not a terminal)."""
    return Console(file=io.StringIO())


def make_trainer(model: nn.Module, train_settings: TrainSettings, out_dir: Any, **kwargs: Any) -> Trainer:
    """A Trainer with the torch default collate (the toy items are not clips) and a quiet console."""
    kwargs.setdefault("collate_fn", default_collate)
    kwargs.setdefault("console", quiet_console())
    return Trainer(model, train_settings, out_dir=out_dir, **kwargs)

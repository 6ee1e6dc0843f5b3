"""Tiny stand-in components for tests of the core: real implementations of the interfaces, small
enough that a whole pipeline runs in seconds on a CPU."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.interfaces import Denoiser, Metric, TrainStep, VideoDataset, VideoTokenizer
from vqvdm_core.interfaces.configurable import ComponentConfig


class TinyClips(VideoDataset):
    """Deterministic random clips: a bright square drifting right or left (the class)."""

    class Config(ComponentConfig):
        num_clips: int = 8
        frames: int = 4
        size: int = 8
        num_classes: int = 2
        fps: float = 8.0
        seed: int = 0

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.frames, c.size, c.size)

    @property
    def class_names(self) -> list[str] | None:
        return [f"c{k}" for k in range(self.config.num_classes)] if self.config.num_classes else None

    def __len__(self) -> int:
        return self.config.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        c = self.config
        g = torch.Generator().manual_seed(c.seed * 1000 + index)
        video = torch.full((3, c.frames, c.size, c.size), -1.0)
        x0 = int(torch.randint(0, c.size, (1,), generator=g))
        label = index % max(1, c.num_classes)
        step = 1 if label == 0 else -1
        for t in range(c.frames):
            x = (x0 + step * t) % c.size
            video[:, t, 2:5, x] = 1.0
        return {"video": video, "fps": c.fps, "label": label if c.num_classes else -1}


class TinyTokenizer(VideoTokenizer):
    """A learned 2x spatial down/up-sampling autoencoder."""

    class Config(ComponentConfig):
        latent_channels: int = 2

    def __init__(self, config: Config | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.down = nn.Conv3d(3, self.config.latent_channels, (1, 2, 2), stride=(1, 2, 2))
        self.up = nn.ConvTranspose3d(self.config.latent_channels, 3, (1, 2, 2), stride=(1, 2, 2))

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.latent_channels, frames, height // 2, width // 2)

    def encode(self, video: Tensor) -> Tensor:
        return self.down(video)

    def decode(self, latent: Tensor) -> Tensor:
        return self.up(latent)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generator": list(self.parameters())}

    def training_step(self, batch: Any, *, step: int) -> TrainStep:
        video = batch["video"]
        loss = F.mse_loss(self.decode(self.encode(video)), video)
        return TrainStep({"generator": loss}, {"recon": float(loss.detach())})


class TinyDenoiser(Denoiser):
    """One 3D convolution plus a time/condition embedding."""

    class Config(ComponentConfig):
        in_channels: int | None = None
        emb_dim: int = Field(16, ge=1)

    def __init__(self, config: Config | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config.in_channels
        if c is None:
            raise ValueError("TinyDenoiser needs in_channels")
        self.conv_in = nn.Conv3d(c, 8, 3, padding=1)
        self.emb = nn.Linear(self.config.emb_dim, 8)
        self.conv_out = nn.Conv3d(8, c, 3, padding=1)

    @property
    def prediction_type(self) -> str:
        return "epsilon"

    @property
    def emb_dim(self) -> int:
        return self.config.emb_dim

    def time_embedding(self, t: Tensor) -> Tensor:
        half = self.emb_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos(), torch.zeros_like(args[:, : self.emb_dim % 2])], dim=1)

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        e = self.time_embedding(t) + (emb if emb is not None else 0)
        h = F.silu(self.conv_in(x_t) + self.emb(e)[:, :, None, None, None])
        return self.conv_out(h)


class MeanBrightness(Metric):
    """Mean pixel value of generated clips (needs no real clips)."""

    requires_real = False

    class Config(ComponentConfig):
        pass

    def __init__(self, config: Config | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.reset()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if fake is not None:
            self.total += float(fake.float().sum())
            self.count += fake.numel()

    def compute(self) -> dict[str, float]:
        return {"mean": self.total / max(1, self.count)}

    def reset(self) -> None:
        self.total, self.count = 0.0, 0


STANDINS: dict[tuple[str, str], type] = {
    ("dataset", "tiny_clips"): TinyClips,
    ("tokenizer", "tiny_tokenizer"): TinyTokenizer,
    ("denoiser", "tiny_denoiser"): TinyDenoiser,
    ("metric", "mean_brightness"): MeanBrightness,
}


def tiny_recipe(**changes: Any) -> dict[str, Any]:
    """A complete recipe over the stand-ins and the default schedule/conditioners/guidance."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {"train": {"name": "tiny_clips"}, "val": {"name": "tiny_clips", "seed": 1}},
        "tokenizer": {"name": "tiny_tokenizer"},
        "denoiser": {"name": "tiny_denoiser"},
        "schedule": {"name": "ddpm", "num_train_steps": 50},
        "conditioners": [{"name": "fps"}, {"name": "class", "dropout": 0.5}],
        "guidance": {"name": "cfg", "scale": 2.0},
        "train": {
            "tokenizer": {"steps": 4, "batch_size": 4, "log_every": 2, "val_every": 2, "ckpt_every": 2,
                          "val_clips": 2, "val_metrics": [{"name": "mean_brightness"}]},
            "denoiser": {"steps": 4, "batch_size": 4, "log_every": 2, "val_every": 4, "ckpt_every": 2,
                         "val_clips": 2, "ema_decay": 0.9},
        },
        "latents": {"batch_size": 4},
        "sample": {"steps": 5, "fps": [8.0], "batch_size": 4},
        "evaluate": {"metrics": [{"name": "mean_brightness"}], "num_samples": 4, "steps": 5,
                     "batch_size": 4, "guidance_scales": [0.0, 2.0]},
    }
    recipe.update(changes)
    return recipe


def real_tiny_recipe(**changes: Any) -> dict[str, Any]:
    """The default plug-ins (vqgan3d, unet3d, ddpm, fps and class, cfg) at their smallest, the three
    training stages on the CPU: a few seconds per run."""
    recipe: dict[str, Any] = {
        "name": "tiny_real",
        "device": "cpu",
        "stages": ["tokenizer", "latents", "denoiser"],
        "data": {"train": {"name": "synthetic_motion", "num_clips": 8, "frames": 4, "size": 16,
                           "fps_values": [4.0, 8.0]}},
        "tokenizer": {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 4, "channels": 8,
                      "channel_mults": [1, 1, 1], "num_res_blocks": 1, "norm_groups": 4, "num_codes": 16,
                      "perceptual_weight": 0.0},
        "denoiser": {"name": "unet3d", "channels": 8, "channel_mults": [1], "num_res_blocks": 1,
                     "attention_head_dim": 8, "norm_groups": 4},
        "schedule": {"name": "ddpm", "num_train_steps": 50},
        "conditioners": [{"name": "fps"}, {"name": "class"}],
        "guidance": {"name": "cfg"},
        "train": {"tokenizer": {"steps": 2, "batch_size": 4, "val_clips": 0},
                  "denoiser": {"steps": 2, "batch_size": 4, "val_clips": 0}},
        "latents": {"batch_size": 4},
    }
    recipe.update(changes)
    return recipe

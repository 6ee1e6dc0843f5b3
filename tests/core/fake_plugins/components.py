"""One tiny, working component of every kind, for registry and recipe tests (CPU, milliseconds)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import (
    NO_LABEL,
    Conditioner,
    Denoiser,
    Guidance,
    Metric,
    NoiseSchedule,
    PredictionType,
    Sampler,
    TrainStep,
    VideoDataset,
    VideoTokenizer,
)
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.interfaces.sampler import notify


class TinyClips(VideoDataset):
    """Deterministic clips whose brightness ramps over time; the label is the ramp's direction."""

    class Config(ComponentConfig):
        num_clips: int = Field(4, ge=1)
        frames: int = Field(4, ge=2)
        size: int = Field(8, ge=2)
        num_classes: int = Field(2, ge=0)
        fps: float = Field(8.0, gt=0)

    def __len__(self) -> int:
        return self.config.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        c = self.config
        label = index % c.num_classes if c.num_classes else NO_LABEL
        ramp = torch.linspace(-1.0, 1.0, c.frames)
        if label == 1:
            ramp = ramp.flip(0)
        video = ramp[None, :, None, None].expand(3, c.frames, c.size, c.size).clone()  # (3, T, H, W)
        return {"video": video, "fps": c.fps, "label": label}

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.config.frames, self.config.size, self.config.size)

    @property
    def class_names(self) -> list[str] | None:
        return [f"class{k}" for k in range(self.config.num_classes)] or None


class TinyTokenizer(VideoTokenizer):
    """Parameter-free 2x spatial average-pool tokenizer (nothing to train)."""

    class Config(ComponentConfig):
        factor: int = Field(2, ge=1, description="spatial down-sampling factor")

    @property
    def latent_channels(self) -> int:
        return 3

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        f = self.config.factor
        return (3, frames, height // f, width // f)

    def encode(self, video: Tensor) -> Tensor:
        f = self.config.factor
        return F.avg_pool3d(video, (1, f, f))

    def decode(self, latent: Tensor) -> Tensor:
        return F.interpolate(latent, scale_factor=(1, self.config.factor, self.config.factor))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        video = batch["video"]
        return TrainStep({}, {"recon_l1": float((self.decode(self.encode(video)) - video).abs().mean())})


class TinyDenoiser(Denoiser):
    """A 1x1x1 convolution plus a learned time embedding."""

    class Config(ComponentConfig):
        in_channels: int | None = Field(None, ge=1, description="wired: the tokenizer's latent channels")
        emb_dim: int = Field(8, ge=1)
        attention_heads: int = Field(2, ge=1)
        num_time_steps: int = Field(1000, ge=1)

    def __init__(self, config: "TinyDenoiser.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config.in_channels
        if c is None:
            raise ComponentError("TinyDenoiser: set in_channels (the tokenizer's latent channels)")
        self.time = nn.Embedding(self.config.num_time_steps, self.config.emb_dim)
        self.proj = nn.Linear(self.config.emb_dim, c)
        self.conv = nn.Conv3d(c, c, 1)

    @property
    def prediction_type(self) -> PredictionType:
        return "epsilon"

    @property
    def emb_dim(self) -> int:
        return self.config.emb_dim

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        e = self.time(t) + (emb if emb is not None else 0.0)  # (B, D)
        return self.conv(x_t) + self.proj(e)[:, :, None, None, None]


class TinySchedule(NoiseSchedule):
    """Linear-beta DDPM forward process over a few steps (the chains and x0/eps estimates are the
    interface's defaults)."""

    class Config(ComponentConfig):
        num_train_steps: int = Field(10, ge=2)
        beta_end: float = Field(0.2, gt=0, lt=1)

    def __init__(self, config: "TinySchedule.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        betas = torch.linspace(1e-3, self.config.beta_end, self.config.num_train_steps, dtype=torch.float64)
        self.abar = torch.cumprod(1 - betas, 0)

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    @property
    def alphas_cumprod(self) -> Tensor:
        return self.abar

    def sample_timesteps(self, batch_size: int, *, device: torch.device | str,
                         generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, self.num_train_steps, (batch_size,), generator=generator).to(device)

    def _abar(self, t: Tensor, like: Tensor) -> Tensor:
        a = self.abar.to(like.device)[t.to(like.device)].to(like.dtype)
        return a.view(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, 1, 1)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        a = self._abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor,
                        prediction_type: PredictionType) -> Tensor:
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "x0":
            return x0
        a = self._abar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0


class TinyEuler(Sampler):
    """Deterministic first-order steps: x_next = alpha_next x0 + sigma_next eps (DDIM, eta 0)."""

    class Config(ComponentConfig):
        pass

    def sample(self, denoise: Any, x: Tensor, chain: Any, *, generator: Any = None,
               callback: Any = None) -> Tensor:
        for i in range(len(chain)):
            x0, eps = denoise(x, i)
            notify(callback, chain, i, x, x0)
            x = chain.alpha(i + 1) * x0 + chain.sigma(i + 1) * eps
        return x


class TinyLabel(Conditioner):
    """Class label -> learned embedding; index ``num_classes`` is the null class."""

    field = "label"

    class Config(ComponentConfig):
        num_classes: int | None = Field(None, ge=1, description="wired: the dataset's classes")
        emb_dim: int | None = Field(None, ge=1, description="wired: the denoiser's emb_dim")
        dropout: float = Field(0.1, ge=0, le=1)

    def __init__(self, config: "TinyLabel.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        for name in ("num_classes", "emb_dim"):
            if getattr(self.config, name) is None:
                raise ComponentError(f"TinyLabel: set {name}")
        self.table = nn.Embedding(self.config.num_classes + 1, self.config.emb_dim)

    @property
    def guided(self) -> bool:
        return True

    @property
    def dropout(self) -> float:
        return self.config.dropout

    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        return torch.full((batch_size,), self.config.num_classes, dtype=torch.long, device=device)

    def forward(self, values: Tensor) -> Tensor:
        values = torch.where(values < 0, self.config.num_classes, values.long())
        return self.table(values)


class TinyGuidance(Guidance):
    """Classifier-free guidance, ``uncond + w (cond - uncond)``."""

    class Config(ComponentConfig):
        scale: float = Field(1.0, ge=0)

    @property
    def scale(self) -> float:
        return self.config.scale

    def predict(self, denoiser: Denoiser, x_t: Tensor, t: Tensor, *, cond: Tensor | None,
                uncond: Tensor | None, scale: float | None = None) -> Tensor:
        w = self.scale if scale is None else scale
        if w == 1.0 or uncond is None:
            return denoiser(x_t, t, cond)
        c, u = denoiser(x_t, t, cond), denoiser(x_t, t, uncond)
        return u + w * (c - u)


class MeanAbs(Metric):
    """Mean (or max) absolute pixel value of generated clips."""

    requires_real = False

    class Config(ComponentConfig):
        reduce: Literal["mean", "max"] = "mean"

    def __init__(self, config: "MeanAbs.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.reset()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if fake is not None:
            self.values.append(fake.detach().abs().flatten().double().cpu())

    def compute(self) -> dict[str, float]:
        if not self.values:
            raise ValueError("MeanAbs: no generated clips were given")
        allv = torch.cat(self.values)
        return {"abs": float(allv.mean() if self.config.reduce == "mean" else allv.max())}

    def reset(self) -> None:
        self.values: list[Tensor] = []


ALL: dict[tuple[str, str], type] = {
    ("dataset", "tiny_clips"): TinyClips,
    ("tokenizer", "tiny_tokenizer"): TinyTokenizer,
    ("denoiser", "tiny_denoiser"): TinyDenoiser,
    ("schedule", "tiny_schedule"): TinySchedule,
    ("sampler", "tiny_euler"): TinyEuler,
    ("conditioner", "tiny_label"): TinyLabel,
    ("guidance", "tiny_cfg"): TinyGuidance,
    ("metric", "mean_abs"): MeanAbs,
}
"""(kind, name) -> class: one of every kind (a recipe without guidance needs none)."""

"""Motion-strength conditioning: a conditioner on a field of its own, and a tiny data set that has it.

vqvdm's conditions are a mapping of field to values, so a conditioner is not limited to the class
and the FPS. ``motion`` reads the batch field ``"motion"`` (a score per clip, e.g. an optical-flow
magnitude; here the speed of a moving square in [0, 1]) and embeds it as the paper embeds the FPS:
``Linear(SiLU(Linear(PE(motion * scale))))``. The field then travels with the clips through the whole
pipeline: the latent cache keeps it, training feeds it to this conditioner, and sampling takes it as
``system.sample(n, conditions={"motion": [0.2, 0.9, ...]})``; the samples file records it and metrics
that take ``conditions`` receive it.

``motion_clips`` is a data set small enough for tests: a bright square crossing a dark frame at a
speed proportional to the clip's ``motion`` value.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import Conditioner, VideoDataset
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["MotionConditioner", "MotionClips", "sinusoidal_encoding"]


def sinusoidal_encoding(values: Tensor, *, dim: int, max_period: float) -> Tensor:
    """``(B,)`` real values -> ``(B, dim)``: cosines and sines at ``dim / 2`` geometric frequencies
    from 1 down to ``1 / max_period`` (a zero column pads an odd ``dim``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    enc = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        enc = torch.cat([enc, torch.zeros_like(enc[:, :1])], dim=1)
    return enc


class MotionConditioner(Conditioner):
    """Motion-strength embedding (field ``motion``): a sinusoidal encoding and a two-layer MLP."""

    field: ClassVar[str] = "motion"

    class Config(ComponentConfig):
        emb_dim: int | None = Field(
            None, ge=1, description="embedding width; filled from the denoiser's emb_dim when unset")
        encoding_dim: int = Field(32, ge=2, description="width of the sinusoidal encoding")
        scale: float = Field(100.0, gt=0.0, description="motion values are multiplied by this before "
                             "the encoding (a [0, 1] score then spans its frequencies)")
        max_period: float = Field(1_000.0, gt=1.0, description="longest period of the encoding")
        guided: bool = Field(False, description="true: classifier-free guidance drops the motion in its "
                             "unconditional branch, as it drops the class")
        dropout: float = Field(0.0, ge=0.0, le=1.0, description="probability of replacing the motion by "
                               "null_motion in training")
        null_motion: float = Field(0.0, description="the null motion value (dropout, guidance)")
        default_motion: float | None = Field(
            None, description="motion used when sampling without one; unset = the caller must give it")

    def __init__(self, config: "MotionConditioner.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        if c.emb_dim is None:
            raise ComponentError("motion conditioner: emb_dim is not set. Set it to the denoiser's emb_dim, "
                                 "or build the system with build_system(), which fills it.")
        self.mlp = nn.Sequential(nn.Linear(c.encoding_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))

    @property
    def guided(self) -> bool:
        return self.config.guided

    @property
    def dropout(self) -> float:
        return self.config.dropout

    def null(self, batch_size: int, *, device: torch.device | str) -> Tensor:
        return torch.full((batch_size,), self.config.null_motion, device=device)

    def default(self, batch_size: int, *, device: torch.device | str) -> Tensor | None:
        if self.config.default_motion is None:
            return None
        return torch.full((batch_size,), self.config.default_motion, device=device)

    def forward(self, values: Tensor) -> Tensor:
        """``(B,)`` motion values -> ``(B, emb_dim)``."""
        c = self.config
        enc = sinusoidal_encoding(values.float() * c.scale, dim=c.encoding_dim, max_period=c.max_period)
        return self.mlp(enc.to(self.mlp[0].weight.dtype))


class MotionClips(VideoDataset):
    """Synthetic clips with a ``motion`` field: a square crossing the frame at ``motion * max_speed``
    pixels per frame, ``motion`` cycling over ``levels`` values in [0, 1]. Unlabelled."""

    class Config(ComponentConfig):
        num_clips: int = Field(8, ge=1, description="clips in the data set")
        frames: int = Field(4, ge=1, description="frames per clip")
        size: int = Field(8, ge=4, description="height and width")
        fps: float = Field(8.0, gt=0.0, description="the clips' frame rate")
        levels: int = Field(2, ge=1, description="distinct motion values, evenly spaced in [0, 1]")
        max_speed: float = Field(2.0, ge=0.0, description="pixels per frame at motion 1")
        seed: int = Field(0, description="start positions are drawn from this seed")

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.frames, c.size, c.size)

    @classmethod
    def clip_shape_of(cls, config: Any) -> tuple[int, int, int] | None:
        return (config.frames, config.size, config.size)

    @classmethod
    def num_classes_of(cls, config: Any) -> int | None:
        return 0

    def __len__(self) -> int:
        return self.config.num_clips

    def motion_of(self, index: int) -> float:
        levels = self.config.levels
        return 0.0 if levels == 1 else (index % levels) / (levels - 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        c = self.config
        g = torch.Generator().manual_seed(c.seed * 1_000 + index)
        motion = self.motion_of(index)
        x0 = float(torch.randint(0, c.size, (1,), generator=g))
        video = torch.full((3, c.frames, c.size, c.size), -1.0)
        for t in range(c.frames):
            x = int(round(x0 + motion * c.max_speed * t)) % c.size
            video[:, t, 2:5, x] = 1.0
        return {"video": video, "fps": c.fps, "label": -1, "motion": motion}

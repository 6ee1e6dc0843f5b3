"""Clip settings and clip arithmetic shared by every dataset that cuts clips from longer videos.

A clip is ``frames`` frames taken every ``frame_stride`` source frames, so it spans
``(frames - 1) * frame_stride + 1`` source frames and plays at ``fps / frame_stride``. Frames are
resized so the shorter side is ``size`` (bilinear, antialiased), centre-cropped to
``size x size`` and scaled from ``uint8`` to ``[-1, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.io.pixels import uint8_to_unit_range  # re-exported: its old home

__all__ = ["ClipConfig", "clip_span", "choose_start", "frames_to_clip", "resize_center_crop",
           "uint8_to_unit_range"]


class ClipConfig(ComponentConfig):
    """Clip settings every file-backed dataset's ``Config`` extends."""

    frames: int = Field(16, ge=1, description="frames T per clip")
    size: int = Field(128, ge=1, description="clips are size x size (shorter side resized, centre crop)")
    frame_stride: int = Field(1, ge=1, description="take every k-th source frame; the clip's fps is fps / k")
    random_clip: bool = Field(
        True,
        description="True: a random start frame on every access (training). False: fixed clips "
                    "(validation / evaluation), see clips_per_video",
    )
    clips_per_video: int = Field(
        1, ge=1,
        description="items per video; with random_clip false they start evenly spaced from the first "
                    "frame to the last possible start (1: the clip at the start)",
    )
    seed: int = Field(0, description="seeds the choices that must repeat (the stand-in for a bad file)")

    def clip_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the clips: ``frames`` of ``size x size``."""
        return (self.frames, self.size, self.size)


def clip_span(frames: int, stride: int) -> int:
    """Source frames covered by a clip of ``frames`` frames taken every ``stride`` frames."""
    return (frames - 1) * stride + 1


def choose_start(
    num_frames: int,
    *,
    frames: int,
    stride: int = 1,
    random_clip: bool = True,
    clip: int = 0,
    clips_per_video: int = 1,
    generator: torch.Generator | None = None,
) -> int:
    """First source frame of a clip from a video of ``num_frames`` frames.

    ``random_clip``: uniform over every start that fits, drawn from ``generator`` (the global torch
    generator when None, which DataLoader seeds differently per worker and epoch). Otherwise clip
    ``clip`` of ``clips_per_video`` evenly spaced clips; a single clip starts at frame 0.
    """
    span = clip_span(frames, stride)
    last = num_frames - span  # the last start that still fits
    if last < 0:
        raise ValueError(f"a video of {num_frames} frames is shorter than a clip "
                         f"({frames} frames x stride {stride} = {span} source frames)")
    if random_clip:
        return int(torch.randint(0, last + 1, (1,), generator=generator))
    if not 0 <= clip < clips_per_video:
        raise ValueError(f"clip {clip} out of range for clips_per_video={clips_per_video}")
    if clips_per_video == 1:
        return 0
    return round(clip * last / (clips_per_video - 1))


def _resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """``(H', W')`` with the shorter side ``size`` and the aspect ratio kept."""
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def _resize_crop_frames(frames: Tensor, size: int) -> Tensor:
    """``(T, C, H, W)`` -> ``(T, C, size, size)``: shorter side to ``size``, centre crop."""
    h, w = frames.shape[-2:]
    new_h, new_w = _resized_shape(h, w, size)
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True,
                               align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return frames[:, :, top:top + size, left:left + size]


def resize_center_crop(video: Tensor, size: int) -> Tensor:
    """``(C, T, H, W)`` float -> ``(C, T, size, size)``: shorter side to ``size``, then centre crop."""
    frames = rearrange(video, "c t h w -> t c h w")
    return rearrange(_resize_crop_frames(frames, size), "t c h w -> c t h w")


def frames_to_clip(frames: Tensor, size: int) -> Tensor:
    """Decoded ``uint8`` frames ``(T, H, W, 3)`` -> model clip ``(3, T, size, size)`` float32 in [-1, 1].

    On the CPU the resize runs on the ``uint8`` frames in their channels-last layout, PyTorch's
    fast antialiased path (about 10x the float path), rounding to whole grey levels as image
    libraries do.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got {tuple(frames.shape)}")
    x = rearrange(frames, "t h w c -> t c h w")  # a channels-last view, no copy
    if x.device.type != "cpu" or x.dtype != torch.uint8:
        x = x.float()
    x = _resize_crop_frames(x, size)
    return uint8_to_unit_range(rearrange(x, "t c h w -> c t h w")).contiguous()

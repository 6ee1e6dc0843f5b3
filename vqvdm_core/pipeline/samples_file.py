"""Generated clips on disk: ``samples.safetensors`` with the conditions they were asked for.

Holds ``video`` as uint8 ``(N, 3, T, H, W)`` (8-bit, as any video file would), ``label`` ``(N,)`` and
``fps`` ``(N,)``, so `vqvdm evaluate` can score samples without generating them again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vqvdm_core.errors import MissingFileError, UserError


def save_samples(path: Path, video: torch.Tensor, labels: list[int], fps: list[float]) -> None:
    """Write clips in [-1, 1] ``(N, 3, T, H, W)`` with their conditions."""
    pixels = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"video": pixels, "label": torch.tensor(labels, dtype=torch.long),
               "fps": torch.tensor(fps, dtype=torch.float32)}, str(tmp))
    tmp.replace(path)


def load_samples(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(video in [-1, 1] float32, labels, fps)`` from a samples file."""
    if not path.is_file():
        raise MissingFileError(f"samples file not found: {path}")
    try:
        data = load_file(str(path))
        pixels, labels, fps = data["video"], data["label"], data["fps"]
    except (KeyError, OSError, ValueError, SafetensorError) as exc:
        raise UserError(f"{path} is not a vqvdm samples file (video, label, fps): {exc}") from None
    if pixels.dtype != torch.uint8 or pixels.ndim != 5 or pixels.shape[1] != 3 or labels.shape != (pixels.shape[0],) \
            or fps.shape != (pixels.shape[0],):
        raise UserError(f"{path} is not a vqvdm samples file: expected video uint8 (N, 3, T, H, W) with N labels "
                        f"and N fps values, got video {pixels.dtype} {tuple(pixels.shape)}, label "
                        f"{tuple(labels.shape)}, fps {tuple(fps.shape)}")
    return pixels.float() / 127.5 - 1.0, labels, fps

"""Generated clips on disk: ``samples.safetensors`` with the conditions they were asked for.

Holds ``video`` as uint8 ``(N, 3, T, H, W)`` (8-bit, as any video file would), ``label`` ``(N,)``,
``fps`` ``(N,)`` and every other conditioner field the clips were asked for (``motion`` ``(N,)``...),
each under its own name, so `vqvdm evaluate` can score samples without generating them again. Files
written before other fields were kept hold ``label`` and ``fps`` alone, and read as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_core.io.atomic import atomic_write
from vqvdm_core.io.pixels import uint8_to_unit_range, unit_range_to_uint8


def save_samples(path: Path, video: torch.Tensor, labels: list[int], fps: list[float],
                 conditions: Mapping[str, Sequence[float] | torch.Tensor] | None = None) -> None:
    """Write clips in [-1, 1] ``(N, 3, T, H, W)`` with their conditions: ``labels``, ``fps`` and
    ``conditions``, every other field -> one value per clip (``label``/``fps`` in it are ignored)."""
    pixels = unit_range_to_uint8(video).contiguous()
    extra = {}
    for name, values in (conditions or {}).items():
        if name in ("label", "fps"):
            continue
        if name == "video":
            raise ValueError("a samples file's condition field cannot be named 'video'")
        tensor = torch.as_tensor(values).detach().cpu()
        tensor = tensor if tensor.dtype in (torch.long, torch.bool) else tensor.float()
        if tensor.shape != (pixels.shape[0],):
            raise ValueError(f"condition '{name}' needs one value per clip ({pixels.shape[0]}), "
                             f"got shape {tuple(tensor.shape)}")
        extra[name] = tensor.contiguous()
    data = save({"video": pixels, "label": torch.tensor(labels, dtype=torch.long),
                 "fps": torch.tensor(fps, dtype=torch.float32), **extra})
    atomic_write(path, lambda handle: handle.write(data))  # a temporary beside it, removed if it fails


def load_samples(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(video in [-1, 1] float32, labels, fps)`` from a samples file."""
    video, conditions = load_samples_with_conditions(path)
    return video, conditions["label"], conditions["fps"]


def load_samples_with_conditions(path: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(video in [-1, 1] float32, conditions)`` from a samples file: ``conditions`` maps every
    field the file holds (``label``, ``fps`` and any other) to its ``(N,)`` values."""
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
    others = {k: v for k, v in data.items() if k not in ("video", "label", "fps")}
    bad = sorted(k for k, v in others.items() if v.shape != (pixels.shape[0],))
    if bad:
        raise UserError(f"{path} is not a vqvdm samples file: the conditions {bad} do not have one value per clip")
    return uint8_to_unit_range(pixels), {"label": labels, "fps": fps, **others}

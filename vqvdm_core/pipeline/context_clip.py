"""The clip that ``vqvdm sample --context`` continues: a video file, or a clip of the recipe's data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NO_LABEL
from vqvdm_core.io.pixels import uint8_to_unit_range

__all__ = ["ContextClip", "load_context", "mark_generated"]

DATASET_CLIP = re.compile(r"^(train|val):(\d+)$")


@dataclass
class ContextClip:
    video: torch.Tensor
    """``(1, 3, T, H, W)`` in [-1, 1]: the given clip, up to the frames asked for."""
    fps: float | None
    """The file's frame rate, or the data set clip's FPS."""
    label: int
    """The data set clip's class (``NO_LABEL`` for a file)."""
    source: str


def load_context(spec: str, ctx: Any, *, context_frames: int, max_frames: int) -> ContextClip:
    """Read ``spec``: a video file path, or ``train:INDEX`` / ``val:INDEX`` (a clip of the recipe's data;
    ``ctx`` is the run's context, None for an exported pipeline, which has no data).

    Reads at most ``max_frames`` frames; refuses a clip shorter than ``context_frames`` or a file
    that is not a video, with one message naming it.
    """
    path = Path(spec)
    match = DATASET_CLIP.match(spec)
    if match and not path.exists():
        which, index = match.group(1), int(match.group(2))
        if ctx is None:
            raise UserError(f"--context {spec} names a clip of a run's data, but an exported pipeline has no "
                            "data set: give a video file")
        data = ctx.dataset(which)
        if index >= len(data):
            raise UserError(f"--context {spec}: the {which} data has {len(data)} clips (indices 0 to {len(data) - 1})")
        item = data[index]
        video = torch.as_tensor(item["video"])
        if video.dtype == torch.uint8:
            video = uint8_to_unit_range(video)
        video = video[None, :, :max_frames].float()
        label = int(item.get("label", NO_LABEL))
        fps = float(item["fps"]) if item.get("fps") is not None else None
        source = f"{which} clip {index}"
    else:
        from vqvdm_core.io.video import read_video

        if not path.is_file():
            raise UserError(f"--context {spec}: no such video file (or use train:INDEX / val:INDEX for a "
                            "clip of the recipe's data)")
        frames, fps = read_video(path, num_frames=max_frames)  # (T, H, W, 3) uint8; a clear error if not a video
        video = uint8_to_unit_range(frames.permute(3, 0, 1, 2)[None])
        label, source = NO_LABEL, str(path)
    available = video.shape[2]
    if available < context_frames:
        raise UserError(f"--context {source} has {available} frames, fewer than --context-frames {context_frames}")
    return ContextClip(video=video, fps=fps, label=label, source=source)


def mark_generated(video: torch.Tensor, first: int, *, width: int = 1) -> torch.Tensor:
    """A copy of ``(N, 3, T, H, W)`` clips in [-1, 1] with a red border on frames ``first`` onwards,
    so that a grid shows where the given frames end and the generated ones begin."""
    marked = video.clone()
    red = torch.tensor([1.0, -1.0, -1.0], dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
    later = marked[:, :, first:]  # a view: written in place
    later[..., :width, :] = red
    later[..., -width:, :] = red
    later[..., :, :width] = red
    later[..., :, -width:] = red
    return marked

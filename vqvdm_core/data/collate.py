"""Batching dataset items: :func:`collate_clips` is the one ``collate_fn`` of the library (video
datasets, cached latents, the training engine's default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from vqvdm_core.interfaces import NO_LABEL
from vqvdm_core.io.pixels import uint8_to_unit_range

__all__ = ["collate_clips"]


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Items ``{"video": (3, T, H, W), "fps": float, "label": int | None}`` -> a batch.

    The batch holds ``video`` ``(B, 3, T, H, W)`` float in [-1, 1] (``uint8`` clips are scaled),
    ``fps`` ``(B,)`` float32 and ``label`` ``(B,)`` long with ``None`` mapped to ``NO_LABEL``
    (-1); each of the three only when the items have it (cached latents have ``latent`` instead
    of ``video``). Any other keys are batched by ``default_collate``.
    """
    if not items:
        raise ValueError("collate_clips: empty batch")
    batch: dict[str, Any] = {}
    if "video" in items[0]:
        video = torch.stack([torch.as_tensor(item["video"]) for item in items])  # (B, 3, T, H, W)
        batch["video"] = uint8_to_unit_range(video) if video.dtype == torch.uint8 else video
    if "fps" in items[0]:
        batch["fps"] = torch.tensor([float(item["fps"]) for item in items], dtype=torch.float32)
    if "label" in items[0] or "video" in items[0]:
        batch["label"] = torch.tensor([NO_LABEL if item.get("label") is None else int(item["label"])
                                       for item in items], dtype=torch.long)
    for key in items[0]:
        if key not in batch:
            batch[key] = default_collate([item[key] for item in items])
    return batch


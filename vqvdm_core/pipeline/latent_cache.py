"""The latent cache: the training set encoded once by the frozen tokenizer.

Stored as one safetensors file with ``latent`` ``(N, c, t, h, w)`` (unscaled), ``fps`` ``(N,)``,
``label`` ``(N,)`` and every other per-clip field the data provides (a plug-in conditioner's
``motion`` ``(N,)``...), each under its own name, so the denoiser stage never pays for the tokenizer.
Caches written before other fields were kept hold ``fps`` and ``label`` alone, and read as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset


def save_latents(path: Path, latent: torch.Tensor, fps: torch.Tensor, label: torch.Tensor,
                 fields: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write the cache; ``fields``: every other per-clip condition field -> ``(N,)`` values."""
    extra = dict(fields or {})
    clash = sorted(set(extra) & {"latent", "fps", "label"})
    if clash:
        raise ValueError(f"latent cache fields {clash} are reserved")
    for name, values in extra.items():
        if values.shape != (latent.shape[0],):
            raise ValueError(f"latent cache field '{name}' has shape {tuple(values.shape)}, "
                             f"expected ({latent.shape[0]},)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"latent": latent.contiguous(), "fps": fps.float().contiguous(),
               "label": label.long().contiguous(), **{k: v.contiguous() for k, v in extra.items()}}, str(tmp))
    tmp.replace(path)


def condition_fields(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The fields of a collated batch, besides ``video``/``latent``/``fps``/``label``, that hold one
    number per clip (a ``(B,)`` integer, float or bool tensor): what a conditioner may read."""
    size = None
    for key in ("video", "latent"):
        if isinstance(batch.get(key), torch.Tensor):
            size = batch[key].shape[0]
    out = {}
    for key, value in batch.items():
        if key in ("video", "latent", "fps", "label") or not isinstance(value, torch.Tensor):
            continue
        if value.ndim == 1 and (size is None or value.shape[0] == size) and not value.is_complex():
            out[key] = value.detach().cpu()
    return out


class LatentDataset(Dataset):
    """Items ``{"latent": (c, t, h, w), "fps": float, "label": int, <other field>: 0-d tensor}`` from
    a latent cache file (other fields keep their stored dtype through collation)."""

    def __init__(self, path: Path):
        data = load_file(str(path))
        self.latent, self.fps, self.label = data["latent"], data["fps"], data["label"]
        self.fields: dict[str, torch.Tensor] = {k: v for k, v in data.items()
                                                if k not in ("latent", "fps", "label")}

    def __len__(self) -> int:
        return int(self.latent.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"latent": self.latent[index], "fps": float(self.fps[index]),
                "label": int(self.label[index]), **{k: v[index] for k, v in self.fields.items()}}

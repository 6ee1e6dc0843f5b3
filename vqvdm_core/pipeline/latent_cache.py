"""The latent cache: the training set encoded once by the frozen tokenizer.

Stored as one safetensors file with ``latent`` ``(N, c, t, h, w)`` (unscaled), ``fps`` ``(N,)`` and
``label`` ``(N,)``, so the denoiser stage never pays for the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset


def save_latents(path: Path, latent: torch.Tensor, fps: torch.Tensor, label: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"latent": latent.contiguous(), "fps": fps.float().contiguous(),
               "label": label.long().contiguous()}, str(tmp))
    tmp.replace(path)


class LatentDataset(Dataset):
    """Items ``{"latent": (c, t, h, w), "fps": float, "label": int}`` from a latent cache file."""

    def __init__(self, path: Path):
        data = load_file(str(path))
        self.latent, self.fps, self.label = data["latent"], data["fps"], data["label"]

    def __len__(self) -> int:
        return int(self.latent.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"latent": self.latent[index], "fps": float(self.fps[index]),
                "label": int(self.label[index])}

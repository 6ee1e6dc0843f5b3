"""Checkpoints (training state) and exported weights, written atomically and read without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, saved with ``torch.save``
and read back with ``torch.load(..., weights_only=True)``. Writing goes to a temporary file in the
same directory, which is flushed and fsync'ed, then moved over the old file with ``os.replace``
(atomic on POSIX and Windows: :mod:`vqvdm_core.io.atomic`); a crash at any moment leaves either the
previous complete checkpoint or the new complete one, never a torn file.

Exported weights (``export_weights``) are a safetensors file of the model's state dict.

Both get a ``<file>.sha256`` beside them when written (:mod:`vqvdm_core.io.checksum`), checked before
they are read: a file damaged in place is refused, naming it, instead of being trained on or sampled
from. Files without one (written by older versions) are read unchecked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_core.io.atomic import atomic_write, remove_stale_temporaries  # re-exported
from vqvdm_core.io.checksum import verify_file, write_with_digest

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "load_weights",
    "remove_stale_temporaries",
    "save_checkpoint",
    "save_weights",
]

CHECKPOINT_FORMAT = "vqvdm-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FORMAT = "vqvdm-weights"


class CheckpointError(UserError):
    """A checkpoint or weight file that cannot be read, or does not fit the model."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically save a training-state dict (tensors, numbers, strings, lists, dicts only)."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return write_with_digest(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    verify_file(path, what="the checkpoint", advice=f"Delete {path.parent} to start the stage afresh.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the same user problem
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}. Delete it to start the stage "
                              "afresh.") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vqvdm training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer vqvdm (checkpoint version "
                              f"{state['version']}); upgrade vqvdm to resume it")
    return state


def _plain_tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared or non-contiguous storage: give every entry its own copy.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(state: dict[str, Tensor], path: str | Path, *, metadata: dict[str, str] | None = None) -> Path:
    """Atomically write a state dict as safetensors."""
    from safetensors.torch import save

    data = save(_plain_tensors(state), metadata={"format": WEIGHTS_FORMAT, **(metadata or {})})
    return write_with_digest(path, lambda handle: handle.write(data), needed=len(data))


def load_weights(path: str | Path, *, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read weights written by ``Trainer.export_weights`` / :func:`save_weights`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights not found: {path}")
    verify_file(path, what="the weights", advice="Train again the stage that wrote it (vqvdm run RECIPE "
                "--stage ... --force), or restore the file from a copy.")
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc

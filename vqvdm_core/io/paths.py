"""Output paths checked before any work: a folder that cannot be made or written is one message."""

from __future__ import annotations

import os
from pathlib import Path

from vqvdm_core.errors import UserError

__all__ = ["check_can_write"]


def check_can_write(path: str | os.PathLike[str], *, what: str) -> Path:
    """Refuse ``path`` (a file or folder to be created under existing folders) when the nearest
    existing folder above it is a file or is not writable; return it as a Path. ``what`` names it
    in the message (``"the run directory"``, ``"--out"``)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path or path.is_dir():
        folder = existing
    else:  # an existing file: it is replaced inside its folder
        folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: the folder {folder} is not writable")
    return path

"""Output paths checked before any work: a folder that cannot be made or written is one message."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from vqvdm_core.errors import UserError

__all__ = ["check_can_write", "inside_path"]


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


def inside_path(name: str) -> PurePosixPath:
    """``name``, a path that a file list or a config gives relative to a folder, as a normalised
    relative POSIX path that stays inside that folder; ``ValueError`` saying why otherwise.

    The rule of ``tarfile``'s data filter: no absolute path (``/x``, ``\\x``, ``C:x``), no ``..``
    part, no NUL. Backslashes count as separators (the UCF-101 lists come from Windows); ``.`` and
    empty parts are dropped (``a//./b`` is ``a/b``).
    """
    if "\x00" in name:
        raise ValueError(f"{name!r} holds a NUL character")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"{name!r} is an absolute path; give it relative to its folder")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{name!r} climbs out of its folder ('..')")
    if not parts:
        raise ValueError(f"{name!r} names no file")
    return PurePosixPath(*parts)

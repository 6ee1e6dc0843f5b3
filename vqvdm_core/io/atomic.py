"""Files written atomically: complete or not at all, and a failed write named as one error.

A file goes to a temporary file in the same directory, which is flushed and fsync'ed, then moved over
the old file with ``os.replace`` (atomic on POSIX and Windows); a crash at any moment leaves either
the previous complete file or the new complete one, never a torn file. Checkpoints, weights,
samples, reports, stage records, ``metrics.jsonl`` rewrites and training curves are written this way.

A write that fails with an ``OSError`` (a full disk, a quota, an I/O error, a read-only folder) removes
its temporary file, keeps the previous file and raises :class:`WriteFailedError`: one message naming
the file, the reason, the space free on its disk and the space the file needs.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vqvdm_core.errors import WorkFailure

__all__ = ["WriteFailedError", "atomic_path", "atomic_write", "human_bytes", "remove_stale_temporaries",
           "write_failure"]

_TMP_PREFIX = ".tmp-"

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""Errors that more free space (or a smaller file) cures."""


class WriteFailedError(WorkFailure, OSError):
    """A file that could not be written (the previous one, if any, is kept): exit code 1. Also an
    ``OSError`` (with the original ``errno`` and ``filename``), as the failure it reports was."""

    def __init__(self, message: str, *, path: Path, errno_code: int | None):
        super().__init__(message)
        self.path = path
        self.errno = errno_code
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def human_bytes(n: int | float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, as ``df -h``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _free_space(folder: Path) -> int | None:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_failure(path: Path, exc: OSError, *, needed: int | None = None, written: int | None = None,
                  kept: bool = True) -> WriteFailedError:
    """The :class:`WriteFailedError` for ``exc`` raised while writing ``path``: the reason (with its
    errno name), the free space on the disk, and ``needed`` bytes for the file (or at least the
    ``written`` bytes that went out before it failed)."""
    code = exc.errno
    reason = exc.strerror or str(exc) or type(exc).__name__
    if code in errno.errorcode:
        reason += f" ({errno.errorcode[code]})"
    free = _free_space(path.parent)
    parts = [f"cannot write {path}: {reason}"]
    space = f"the disk holding {path.parent} has {human_bytes(free)} free" if free is not None else ""
    if needed is not None:
        space += ("; " if space else "") + f"the file needs {human_bytes(needed)}"
    elif written:
        space += ("; " if space else "") + f"the file needs more than the {human_bytes(written)} written before it failed"
    if space:
        parts.append(space)
    advice = ("free space there (or set output_dir to another disk) and run the command again"
              if code in _NO_SPACE else "fix the folder or the disk and run the command again")
    if kept and path.exists():
        advice += f"; the previous {path.name} is kept as it was"
    return WriteFailedError(". ".join(parts) + ": " + advice, path=path, errno_code=code)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


@contextmanager
def atomic_path(path: str | Path, *, needed: int | None = None,
                before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, for writers that pick the format by it) to
    write; on leaving, it is fsync'ed and renamed over ``path``. If the body raises (or the process
    dies), ``path`` keeps its previous content; an ``OSError`` becomes a :class:`WriteFailedError`
    (``needed``: the file's size when known, else that of the file it replaces).
    ``before_replace(tmp)`` runs on the complete temporary file just before the rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc, needed=needed) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        written = _size(tmp)
        tmp.unlink(missing_ok=True)
        if isinstance(exc, WriteFailedError):  # a nested write (the digest record) already says what failed
            raise
        raise write_failure(path, exc, needed=needed if needed is not None else _size(path),
                            written=written) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, needed: int | None = None,
                 before_replace: Callable[[Path], None] | None = None) -> Path:
    """Write ``path`` through ``write(file)`` so that it appears complete or not at all
    (:func:`atomic_path`; ``needed``: the size of the data, when known, for the message of a failed
    write)."""
    path = Path(path)
    with atomic_path(path, needed=needed, before_replace=before_replace) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
    return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files left by a save that was killed; return what was removed."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for tmp in directory.glob(f"{_TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed

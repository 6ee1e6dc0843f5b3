"""A SHA-256 beside every checkpoint and weight file, recorded when it is written and checked when read.

``last.pt`` gets ``last.pt.sha256``, in ``sha256sum``'s format (``<hex>  last.pt``): ``sha256sum -c
last.pt.sha256`` checks it too. A file whose bytes were changed in place after it was written (a bad
disk, a copy cut short and padded, a bit flipped in transfer) no longer matches and is refused
before anything is loaded from it, instead of training on, or sampling from, damaged tensors.

Crash safety: the new digest is recorded *before* the new file replaces the old one, beside the
old file's digest (two lines), and the old line is dropped once the new file is in place. A crash at
any moment leaves a file that matches one of the recorded lines. A file without a ``.sha256`` beside
it (written by an older vqvdm, or by another program) is read as before, unchecked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vqvdm_core.errors import UserError
from vqvdm_core.io.atomic import atomic_write

__all__ = ["SUFFIX", "ChecksumError", "digest_path", "file_sha256", "recorded_digests", "verify_file",
           "write_with_digest"]

SUFFIX = ".sha256"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_CHUNK = 1 << 22


class ChecksumError(UserError):
    """A file that does not match the digest recorded when it was written (or whose record is damaged)."""


def digest_path(path: Path) -> Path:
    """Where ``path``'s digest is recorded: ``<path>.sha256``."""
    return path.with_name(path.name + SUFFIX)


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes (read in 4 MiB chunks)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def recorded_digests(path: Path) -> list[str] | None:
    """The digests recorded for ``path`` (one, or two while it is being replaced); ``None`` when no
    record exists. A record that cannot be read is a :class:`ChecksumError` naming it."""
    record = digest_path(path)
    try:
        text = record.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksumError(f"cannot read the checksum {record} of {path}: {exc}") from None
    digests = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None or match.group(2) != path.name:
            raise ChecksumError(f"{record} is not a sha256sum record of {path.name} (line {line.strip()!r}): "
                                "it was damaged or edited; delete it to read the file unchecked")
        digests.append(match.group(1))
    if not digests:
        raise ChecksumError(f"{record} records no digest of {path.name}: delete it to read the file unchecked")
    return digests


def _record(path: Path, digests: list[str]) -> None:
    text = "".join(f"{digest}  {path.name}\n" for digest in digests)
    atomic_write(digest_path(path), lambda handle: handle.write(text.encode("ascii")))


def write_with_digest(path: str | Path, write: Callable[[BinaryIO], None], *, needed: int | None = None) -> Path:
    """:func:`~vqvdm_core.io.atomic.atomic_write` ``path`` and record its SHA-256 beside it."""
    path = Path(path)
    previous: list[str] = []
    if path.is_file():
        try:
            previous = (recorded_digests(path) or [file_sha256(path)])[:1]
        except (ChecksumError, OSError):
            previous = []  # the old file's record is already broken: nothing to keep valid
    new: list[str] = []

    def record_first(tmp: Path) -> None:
        new.append(file_sha256(tmp))
        _record(path, new + [d for d in previous if d != new[0]])

    atomic_write(path, write, needed=needed, before_replace=record_first)
    try:
        _record(path, new)  # the old file is gone: drop its line
    except UserError:
        pass  # the two-line record still holds the new file's digest
    return path


def verify_file(path: str | Path, *, what: str, advice: str) -> bool:
    """Check ``path`` against its recorded SHA-256: ``True`` when it matches, ``False`` when no digest
    was recorded (an older file); a mismatch is a :class:`ChecksumError` naming the file, ``what`` it
    is and ``advice`` (what to do)."""
    path = Path(path)
    digests = recorded_digests(path)
    if digests is None:
        return False
    actual = file_sha256(path)
    if actual not in digests:
        raise ChecksumError(f"{what} {path} does not match the SHA-256 recorded when it was written "
                            f"({digest_path(path).name}: {digests[0][:12]}..., the file: {actual[:12]}...): its "
                            f"bytes were damaged after writing (disk, copy or transfer). {advice} (If you replaced "
                            f"the file on purpose, delete {digest_path(path).name}.)")
    return True

"""Finding videos on disk: video files, folders of frames, and reading a run of frame images.

Walks are sorted (names compared with numbers as numbers, ``frame_2`` before ``frame_10``; a folder
before the folders in it, as ``os.walk`` goes top-down) so every process sees the same order, and
ignore hidden entries (``.DS_Store``, macOS ``._name.mp4`` shadow files). They follow symbolic
links, also to folders outside the root (data sets are often linked into place from where they are
stored), but visit each real folder once, told by ``(st_dev, st_ino)``: a link to the folder itself,
to a folder above it or to a folder already met is passed over, so a link cycle ends the walk there
instead of repeating the tree. Beside it, a real folder is kept before a link to it. Each real video
file is found once too (a second link or hard link to it is passed over); frames in a folder are not
(a link to a frame repeats that frame). A walk lists one folder at a time (``os.scandir``), with no
recursion, so deep and wide trees are walked in bounded time and memory.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vqvdm_core.errors import MissingFileError
from vqvdm_core.interfaces import NO_LABEL
from vqvdm_core.io.frame_size import MAX_FRAME_PIXELS, MAX_FRAME_SIDE, frame_size_problem
from vqvdm_core.io.video import VideoReadError

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "natural_key",
    "require_dir",
    "find_files",
    "find_frame_folders",
    "label_by_folder",
    "read_frame_files",
    "absent",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg",
                                     ".mpeg", ".ogv", ".wmv", ".flv")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list[object]:
    """Sort key comparing runs of digits as numbers: ``img2.jpg < img10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(name)]


def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path if it is a directory; otherwise :class:`MissingFileError` naming it."""
    problem = absent(path, what, directory=True)
    if problem:
        raise MissingFileError(problem[0])
    return Path(path).expanduser()


def absent(path: str | os.PathLike[str], what: str, *, directory: bool) -> list[str]:
    """``[]`` if ``path`` is a directory (``directory``) or a file, else ``["<what> <path> does not
    exist"]`` (or "is not a directory" / "is not a file")."""
    p = Path(path).expanduser()
    if p.is_dir() if directory else p.is_file():
        return []
    state = f"is not a {'directory' if directory else 'file'}" if p.exists() else "does not exist"
    return [f"{what} {p} {state}"]


def _normalise(extensions: Iterable[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


_Identity = tuple[int, int | str]


def _identity(path: str | os.PathLike[str]) -> _Identity | None:
    """``(st_dev, st_ino)`` of what ``path`` points to (links followed); None if it cannot be read.
    A file system that reports no inode numbers (0) gets the resolved path instead."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else (st.st_dev, os.path.realpath(path))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links; a broken link is not a folder
    except OSError:
        return False


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, sorted visible names of what is not a folder)`` for ``root`` and every folder
    below it: a folder, then each folder in it (sorted) with everything below that; each real
    folder once (see the module's docstring)."""
    seen: set[_Identity] = set()
    root_identity = _identity(root)
    if root_identity is not None:
        seen.add(root_identity)
    pending = [root]  # a stack: the next folder to list is the last
    while pending:
        folder = pending.pop()
        dirs: list[os.DirEntry[str]] = []
        names: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.name.startswith("."):
                        if _is_dir(entry):
                            dirs.append(entry)
                        else:
                            names.append(entry.name)
        except OSError:
            continue  # a folder that cannot be listed is passed over, as os.walk passes it
        yield folder, sorted(names, key=natural_key)
        dirs.sort(key=lambda entry: natural_key(entry.name))
        pending.extend(reversed(_unseen(folder, dirs, seen)))


def _unseen(folder: Path, dirs: list[os.DirEntry[str]], seen: set[_Identity]) -> list[Path]:
    """The folders of ``dirs`` (in ``folder``, sorted) whose real folder is not in ``seen``, which
    they join. Real folders claim theirs before links, so beside a folder a link to it is passed over."""
    claimed = set()
    for entry in sorted(dirs, key=_is_link):  # stable: real folders first, each group still sorted
        identity = _identity(entry.path)
        if identity is not None and identity not in seen:
            seen.add(identity)
            claimed.add(entry.name)
    return [folder / entry.name for entry in dirs if entry.name in claimed]


def find_files(root: Path, extensions: Sequence[str]) -> list[Path]:
    """Every file under ``root`` whose suffix (case-insensitive) is in ``extensions``, sorted; each
    real file once (a second path to it, through a link or a hard link, is passed over)."""
    exts = _normalise(extensions)
    seen: set[_Identity] = set()
    found = []
    for folder, names in _walk(root):
        for name in names:
            if not name.lower().endswith(exts):
                continue
            path = folder / name
            identity = _identity(path)  # None for a broken link: kept, and reported when probed
            if identity in seen:
                continue
            if identity is not None:
                seen.add(identity)
            found.append(path)
    return found


def find_frame_folders(root: Path, extensions: Sequence[str]) -> list[tuple[Path, list[Path]]]:
    """Every folder under ``root`` (``root`` included) holding images: ``(folder, sorted frames)``."""
    exts = _normalise(extensions)
    out = []
    for folder, names in _walk(root):
        frames = [folder / name for name in names if name.lower().endswith(exts)]
        if frames:
            out.append((folder, frames))
    return out


def label_by_folder(paths: Sequence[Path], root: Path, *,
                    labelled: bool = True) -> tuple[list[int], list[str] | None]:
    """The class of each of ``paths`` (a video file, or a folder of frames) found under ``root``: the
    name of the folder holding it, as an index into the sorted class names; a path that is ``root``
    or sits directly in it is unlabelled (``NO_LABEL``), and so is every path when not ``labelled``.
    Returns the labels and the class names (None when there are none). Sorting keeps the indices
    stable across runs and machines."""
    if not labelled:
        return [NO_LABEL] * len(paths), None
    has_class = [path != root and path.parent != root for path in paths]
    names = sorted({path.parent.name for path, ok in zip(paths, has_class, strict=True) if ok})
    index = {name: i for i, name in enumerate(names)}
    labels = [index[path.parent.name] if ok else NO_LABEL for path, ok in zip(paths, has_class, strict=True)]
    return labels, names or None


def read_frame_files(files: Sequence[str | os.PathLike[str]], *, start: int, count: int,
                     stride: int = 1) -> Tensor:
    """Frames ``files[start], files[start + stride], ...`` (``count`` of them) as ``uint8 (T, H, W, 3)``.

    Shorter than ``count`` when the list ends first. An image that cannot be decoded, or one
    whose size differs from the first, raises :class:`VideoReadError` naming the file.
    """
    chosen = list(files[start:start + (count - 1) * stride + 1:stride]) if count > 0 else []
    frames: list[np.ndarray] = []
    for file in chosen:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is lower
                image = Image.open(file)  # reads the header only
            with image:
                problem = frame_size_problem(*image.size)
                if problem:
                    raise VideoReadError(f"frame {file} {problem}")
                pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        except FileNotFoundError as exc:
            raise VideoReadError(f"frame file vanished: {file}") from exc
        except Image.DecompressionBombError as exc:  # a header far beyond our limit: PIL refuses first
            raise VideoReadError(f"frame {file} is not decoded: {exc} (a frame may have at most "
                                 f"{MAX_FRAME_PIXELS:,} pixels, {MAX_FRAME_SIDE}x{MAX_FRAME_SIDE})") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise VideoReadError(f"cannot decode frame {file}: {exc}") from exc
        if frames and pixels.shape != frames[0].shape:
            raise VideoReadError(f"frame {file} is {pixels.shape[1]}x{pixels.shape[0]}, the first "
                                 f"frame of the clip is {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(pixels)
    if not frames:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    return torch.from_numpy(np.stack(frames))

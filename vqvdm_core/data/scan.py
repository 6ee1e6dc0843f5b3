"""Finding videos on disk: video files, folders of frames, and reading a run of frame images.

Walks are sorted (names compared with numbers as numbers, ``frame_2`` before ``frame_10``) so
every process sees the same order, follow symbolic links (data sets are often linked into place)
and ignore hidden entries (``.DS_Store``, macOS ``._name.mp4`` shadow files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vqvdm_core.errors import MissingFileError
from vqvdm_core.interfaces import NO_LABEL
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


def _walk(root: Path) -> Iterable[tuple[Path, list[str]]]:
    """``(folder, sorted visible file names)`` for ``root`` and every folder below it, sorted."""
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        yield Path(folder), sorted((f for f in files if not f.startswith(".")), key=natural_key)


def find_files(root: Path, extensions: Sequence[str]) -> list[Path]:
    """Every file under ``root`` whose suffix (case-insensitive) is in ``extensions``, sorted."""
    exts = _normalise(extensions)
    return [folder / name for folder, names in _walk(root) for name in names
            if name.lower().endswith(exts)]


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
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        except FileNotFoundError as exc:
            raise VideoReadError(f"frame file vanished: {file}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise VideoReadError(f"cannot decode frame {file}: {exc}") from exc
        if frames and pixels.shape != frames[0].shape:
            raise VideoReadError(f"frame {file} is {pixels.shape[1]}x{pixels.shape[0]}, the first "
                                 f"frame of the clip is {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(pixels)
    if not frames:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    return torch.from_numpy(np.stack(frames))

"""Finding pretrained weight files on the local disk, never downloading them.

Evaluation networks (I3D for FVD/KVD, C3D for IS, VGG for LPIPS) are community files that the
library cannot fetch (their links die, machines are offline). A plug-in asks for a file by name and
gets its path, or a :class:`MissingFileError` that names the file, says what it is, lists every
place searched and where the community gets it.

Search order (first hit wins):

1. ``explicit``: a path from the recipe/config. If given and missing, that is the error: a path the
   user wrote is never silently replaced by another file.
2. ``env_var``: a per-file environment variable holding the file's path (e.g. ``VQVDM_I3D_TORCHSCRIPT``).
3. ``$VQVDM_WEIGHTS_DIR/<filename>``.
4. ``extra_dirs``: caller-specific folders (e.g. torch hub's ``checkpoints`` folder for VGG).
5. The cache folder ``$XDG_CACHE_HOME/vqvdm/weights`` (default ``~/.cache/vqvdm/weights``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vqvdm_core.errors import MissingFileError, UserError

__all__ = ["WEIGHTS_DIR_ENV", "weights_cache_dir", "find_weights", "check_finite"]

WEIGHTS_DIR_ENV = "VQVDM_WEIGHTS_DIR"
"""Environment variable naming a folder that holds weight files under their usual names."""


def weights_cache_dir() -> Path:
    """The per-user weight cache: ``$XDG_CACHE_HOME/vqvdm/weights`` or ``~/.cache/vqvdm/weights``."""
    root = os.environ.get("XDG_CACHE_HOME")
    base = Path(root).expanduser() if root else Path.home() / ".cache"
    return base / "vqvdm" / "weights"


def find_weights(
    filename: str,
    *,
    explicit: str | os.PathLike[str] | None = None,
    env_var: str | None = None,
    description: str,
    source_url: str,
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Return the path of weight file ``filename``, searching the places listed in the module doc.

    ``description`` says what the file is ("TorchScript I3D trained on Kinetics-400, ...") and
    ``source_url`` where the community gets it; both go into the error when nothing is found.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        raise MissingFileError(
            f"weight file {path} does not exist (the configured path for '{filename}': {description}). "
            f"Fix the path, or remove it to search ${WEIGHTS_DIR_ENV} and {weights_cache_dir()}. "
            f"The community gets this file from: {source_url}"
        )

    searched: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if env_var:
        value = os.environ.get(env_var)
        if value:
            candidates.append((f"${env_var}", Path(value).expanduser()))
        else:
            searched.append(f"${env_var} (not set)")
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        candidates.append((f"${WEIGHTS_DIR_ENV}", Path(weights_dir).expanduser() / filename))
    else:
        searched.append(f"${WEIGHTS_DIR_ENV} (not set)")
    for folder in extra_dirs:
        candidates.append(("", Path(folder).expanduser() / filename))
    candidates.append(("cache", weights_cache_dir() / filename))

    for label, path in candidates:
        if path.is_file():
            return path
        searched.append(f"{path}" + (f" (from {label})" if label and label != "cache" else ""))

    places = "\n  ".join(searched)
    raise MissingFileError(
        f"missing weight file '{filename}': {description}.\n"
        f"Searched:\n  {places}\n"
        f"Get it from {source_url} and put it in {weights_cache_dir()} (or in ${WEIGHTS_DIR_ENV}"
        + (f", or point ${env_var} at it" if env_var else "")
        + ", or set the path in the recipe)."
    )


def check_finite(state: Mapping[str, Any], path: str | os.PathLike[str], *, advice: str) -> None:
    """Refuse (:class:`UserError`) weights ``state`` read from ``path`` when any floating-point tensor
    holds NaN or inf (what a diverged training leaves), naming how many tensors and the first one;
    ``advice`` ends the message (what to do). One pass of ``torch.isfinite`` over the tensors."""
    import torch

    bad = [name for name, tensor in state.items()
           if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex())
           and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UserError(f"{path} holds non-finite values (nan/inf) in {len(bad)} of {len(state)} tensors, "
                        f"e.g. {bad[0]}: {advice}")

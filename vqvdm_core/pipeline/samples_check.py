"""What a samples file must hold before `vqvdm evaluate` scores it: clips to score, and conditions
that are numbers.

:func:`~vqvdm_core.pipeline.samples_file.load_samples_with_conditions` already refuses a file that
is not a samples file (no ``video`` / ``label`` / ``fps``, a video that is not uint8 ``(N, 3, T, H, W)``,
conditions without one value per clip). :func:`check_samples` refuses, one message each, a file of
that layout whose clips cannot be scored: no clips, clips of no frames or no pixels, labels that are
not class indices, an FPS or another condition value that is NaN or infinite. Without it, metrics
fail with a traceback (or report NaN scores and exit 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import NO_LABEL

__all__ = ["check_samples"]


def check_samples(path: Path, video: torch.Tensor, conditions: Mapping[str, torch.Tensor]) -> None:
    """Raise a :class:`UserError` naming ``path`` and the first problem of its clips ``video``
    ``(N, 3, T, H, W)`` and their ``conditions`` (field -> ``(N,)`` values); return when they can be scored."""
    num, _, frames, height, width = video.shape
    if num == 0:
        raise UserError(f"{path} holds 0 clips: there is nothing to score")
    if frames == 0:
        raise UserError(f"the clips of {path} have 0 frames (video {tuple(video.shape)}): there is nothing to score")
    if height == 0 or width == 0:
        raise UserError(f"the clips of {path} have frames of {height}x{width} pixels (video {tuple(video.shape)}): "
                        "there is nothing to score")
    labels = conditions["label"]
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise UserError(f"{path}: label holds {str(labels.dtype).removeprefix('torch.')} values; labels are "
                        f"class indices (integers, {NO_LABEL} for none)")
    bad = torch.nonzero(labels < NO_LABEL).flatten()
    if len(bad):
        raise UserError(f"{path}: the label of clip index {int(bad[0])} is {int(labels[bad[0]])}, not a class index "
                        f"(0 or more, {NO_LABEL} for none){_more(len(bad), 'label')}")
    for field, values in conditions.items():
        if not (values.dtype.is_floating_point or values.dtype.is_complex):
            continue  # integers and booleans are always finite
        bad = torch.nonzero(~torch.isfinite(values)).flatten()
        if len(bad):
            raise UserError(f"{path}: the {field} of clip index {int(bad[0])} is {float(values[bad[0]])} (not finite)"
                            f"{_more(len(bad), field)}; every condition value must be a finite number")


def _more(count: int, field: str) -> str:
    """``" (N clips' {field} in all)"`` when ``count`` > 1 clips are wrong, else nothing."""
    return f" ({count} clips' {field} in all)" if count > 1 else ""

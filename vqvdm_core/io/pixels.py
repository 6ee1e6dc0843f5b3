"""The one conversion between stored 8-bit pixels and the library's video values.

Video tensors are float in ``[-1, 1]`` (:mod:`vqvdm_core.interfaces`); files, samples and some
data sets hold ``uint8`` in ``[0, 255]``. ``v = p / 127.5 - 1`` and ``p = round((v + 1) * 127.5)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["uint8_to_unit_range", "unit_range_to_uint8"]


def uint8_to_unit_range(x: Tensor) -> Tensor:
    """``uint8`` (or float in [0, 255]) -> float32 in [-1, 1]."""
    return (x.float() / 127.5 - 1.0).clamp(-1.0, 1.0)


def unit_range_to_uint8(video: Tensor) -> Tensor:
    """Float video in [-1, 1] (clamped) -> ``uint8`` in [0, 255], rounded to the nearest level."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

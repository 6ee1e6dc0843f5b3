"""The published model sizes (DiT, Peebles & Xie 2023, Table 1; Latte, Ma et al. 2024, Table 1).

``depth`` counts transformer blocks; in Latte's variant 1 half of them are spatial and half
temporal, so Latte-XL has DiT-XL's 28 blocks and (nearly) its parameter count.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["PRESETS", "Preset", "Size"]

Size = Literal["S", "B", "L", "XL"]


class Preset(NamedTuple):
    width: int
    depth: int
    heads: int


PRESETS: dict[str, Preset] = {
    "S": Preset(width=384, depth=12, heads=6),
    "B": Preset(width=768, depth=12, heads=12),
    "L": Preset(width=1024, depth=24, heads=16),
    "XL": Preset(width=1152, depth=28, heads=16),
}

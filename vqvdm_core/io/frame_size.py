"""The largest frame the library decodes: a guard against files whose headers claim absurd sizes.

A PNG header claiming 100000 x 100000 pixels, or a video stream claiming 12000 x 12000, costs a few
bytes to write and tens of gigabytes to decode (a "decompression bomb"). Every frame image and every
video stream is checked against :data:`MAX_FRAME_PIXELS` from its header, before a pixel is decoded,
and refused with a message naming the file (:class:`~vqvdm_core.io.video.VideoReadError`).
8192 x 8192 is about twice 8K UHD (7680 x 4320) and far beyond any frame a video model trains on.
"""

from __future__ import annotations

__all__ = ["MAX_FRAME_SIDE", "MAX_FRAME_PIXELS", "frame_size_problem"]

MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = MAX_FRAME_SIDE * MAX_FRAME_SIDE
"""Frames (images or video) of more pixels than this are refused: 67,108,864 (8192 x 8192)."""


def frame_size_problem(width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` frame is refused (more than :data:`MAX_FRAME_PIXELS`), or None."""
    if width * height <= MAX_FRAME_PIXELS:
        return None
    return (f"claims {width}x{height} pixels ({width * height:,}), more than the {MAX_FRAME_PIXELS:,} "
            f"({MAX_FRAME_SIDE}x{MAX_FRAME_SIDE}) a frame may have: a corrupt file or a decompression "
            "bomb, not decoded")

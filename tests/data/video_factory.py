"""Small videos and frame images generated with PyAV and Pillow (none of our video I/O).

Frame ``i`` of every generated video is a uniform grey of level ``20 + 9 * i`` with a small dark
square, so a decoded frame tells which source frame it was (:func:`frame_index`), even after
lossy compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

HEIGHT, WIDTH = 24, 32


def frame_pixels(i: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 content of source frame ``i``."""
    pixels = np.full((height, width, 3), 20 + 9 * i, dtype=np.uint8)
    pixels[2:6, 2:6] = 0
    return pixels


def frame_index(frame: torch.Tensor) -> int:
    """Which source frame a decoded ``(H, W, 3)`` uint8 or ``(3, H, W)`` [-1, 1] frame shows."""
    if frame.dtype == torch.uint8:
        level = float(frame[8:, 8:].float().median())
    else:
        level = float(((frame[:, 8:, 8:] + 1) * 127.5).median())
    return round((level - 20) / 9)


def make_video(path: Path, num_frames: int, fps: float, *, codec: str = "libx264",
               gop: int = 4, slots: Sequence[int] | None = None) -> Path:
    """Encode ``num_frames`` frames of :func:`frame_pixels` at ``fps`` with PyAV.

    ``slots``: a variable frame rate, frame ``i`` shown at ``slots[i] / fps`` seconds (strictly
    increasing; ``[0, 1, 2, 10, 11]`` pauses for 7 frame times after the third frame).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        quality = {"crf": "4"} if codec == "libx264" else {"qscale": "2"}  # mpeg4: xvid-like AVI
        stream.options = {"g": str(gop), **quality}
        if slots is not None:
            assert len(slots) == num_frames
            stream.time_base = stream.codec_context.time_base = 1 / rate
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i), format="rgb24")
            if slots is not None:
                frame.pts, frame.time_base = slots[i], 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_frames(folder: Path, num_frames: int, *, pattern: str = "{i:08d}.jpg", first: int = 1) -> Path:
    """Write ``num_frames`` images of :func:`frame_pixels` named by ``pattern`` (``i`` from ``first``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(frame_pixels(i)).save(folder / pattern.format(i=i + first), quality=95)
    return folder


def make_corrupt(path: Path) -> Path:
    """A file with a video suffix holding random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path

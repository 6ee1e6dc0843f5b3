"""Reading and writing video files, and tiling clips into labelled grids.

Decoding and encoding go through PyAV (FFmpeg bindings); torchvision 0.29 has no video I/O and we
parse no container by hand. GIFs are written with Pillow, because PyAV's GIF palette path fails.

Two tensor layouts meet here:

* files hold ``uint8`` frames ``(T, H, W, 3)`` (what :func:`read_video` returns);
* models use ``(C, T, H, W)`` float clips in ``[-1, 1]`` (what :func:`video_grid` returns).

:func:`write_video` accepts either.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_core.io.atomic import atomic_path
from vqvdm_core.io.frame_size import frame_size_problem
from vqvdm_core.io.frame_times import FrameTimes
from vqvdm_core.io.pixels import unit_range_to_uint8

__all__ = [
    "VideoReadError",
    "read_video",
    "probe_video",
    "probe_frame_times",
    "write_video",
    "video_grid",
    "grid_cells",
    "write_grid",
    "to_uint8_frames",
    "WRITABLE_SUFFIXES",
]

WRITABLE_SUFFIXES = (".mp4", ".mkv", ".gif")
"""File types :func:`write_video` writes (``.mkv`` is the lossless FFV1 option)."""


class VideoReadError(UserError):
    """A video file exists but cannot be opened or decoded (corrupt, truncated, no video stream)."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MissingFileError(f"video file not found: {path}")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoReadError(f"cannot open video {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} has no video stream")
    stream = container.streams.video[0]
    problem = frame_size_problem(stream.width, stream.height)  # from the header: nothing decoded yet
    if problem:
        container.close()
        raise VideoReadError(f"video {path} {problem}")
    return container


def _stream_fps(stream: av.video.stream.VideoStream, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    raise VideoReadError(f"{path} does not report a frame rate")


def _frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """``(H, W, 3)`` uint8. One scaler thread: libswscale's automatic pool, once started in a process,
    deadlocks that process's forked children (DataLoader workers) at their first conversion; the
    loader's workers are the parallelism."""
    return frame.to_ndarray(format="rgb24", threads=1)


def probe_video(path: str | os.PathLike[str]) -> tuple[int, float]:
    """``(num_frames, fps)`` of the first video stream.

    The frame count comes from the container's metadata; when the stream does not report one
    (some WebM/MKV files), the frames are counted by decoding the whole stream.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream, path)
        count = int(stream.frames or 0)
        if count <= 0:
            stream.thread_type = "AUTO"
            count = sum(1 for _ in container.decode(stream))
    except av.FFmpegError as exc:
        raise VideoReadError(f"cannot decode video {path}: {exc}") from exc
    finally:
        container.close()
    if count <= 0:
        raise VideoReadError(f"{path} contains no decodable frames")
    return count, fps


def probe_frame_times(path: str | os.PathLike[str]) -> FrameTimes | None:
    """The presentation time of every frame of the first video stream, when they are needed.

    None when frame ``n`` is shown at ``start + n / fps`` (a constant-rate stream: seeks use that
    arithmetic), or when the packets carry no usable times (then a seek checks the decoded frames'
    times and falls back to decoding from the first frame). Otherwise (a variable frame rate, e.g.
    a pause in the stream) the times, by which :func:`read_video` finds frame ``n``.

    Reads every packet of the stream once, without decoding (about 3 ms for a 7 s 320x240 AVI).
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        return _frame_times(container, stream, _stream_fps(stream, path))
    except av.FFmpegError as exc:
        raise VideoReadError(f"cannot read the packets of video {path}: {exc}") from exc
    finally:
        container.close()


def _frame_times(container, stream, fps: float) -> FrameTimes | None:
    """:func:`probe_frame_times` on an open container (left at its end)."""
    time_base = stream.time_base
    if time_base is None:
        return None
    pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue  # the empty packet that ends the stream; packets decoded but never shown
        if packet.pts is None:
            return None
        pts.append(packet.pts)
    pts.sort()  # decoding order -> presentation order
    if any(b <= a for a, b in zip(pts, pts[1:])):
        return None  # two frames at one time: times cannot tell them apart
    origin = _origin(stream)
    if all(_index_at(p, time_base, origin, fps) == i for i, p in enumerate(pts)):
        return None
    return FrameTimes.from_pts(pts, time_base=time_base)


def _origin(stream) -> float:
    """Seconds of the stream's first frame."""
    return float((stream.start_time or 0) * stream.time_base)


def _index_at(pts: int, time_base: Fraction, origin: float, fps: float) -> int:
    """The index of the frame shown at ``pts`` in a constant-rate stream."""
    return round((float(pts * time_base) - origin) * fps)


PROBE = "probe"
"""``read_video(frame_times=PROBE)``: read the stream's frame times first when a seek needs them."""


def read_video(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    num_frames: int | None = None,
    stride: int = 1,
    frame_times: FrameTimes | None | Literal["probe"] = PROBE,
) -> tuple[Tensor, float]:
    """Decode frames ``start, start + stride, ...`` (``num_frames`` of them; all when None).

    Frame ``n`` is the ``n``-th frame in presentation order, as stored, also in a
    variable-frame-rate file. Returns ``(frames, fps)``: ``frames`` is a ``uint8`` tensor
    ``(T, H, W, 3)``, ``fps`` the stream's frame rate as the container reports it (not divided by
    ``stride``). Like slicing, the result is shorter than ``num_frames`` when the video ends
    first. For ``start > 0`` the reader seeks to the key frame before ``start`` instead of
    decoding from the beginning, and finds the frames by their times: ``frame_times`` is what
    :func:`probe_frame_times` returns for the file (None: a constant rate, index / fps arithmetic)
    or ``"probe"`` (the default) to read them here first (one pass over the packets). When the
    decoded frames' times do not match, it falls back to decoding from the first frame.
    """
    if start < 0 or stride < 1 or (num_frames is not None and num_frames < 0):
        raise ValueError(f"read_video: need start >= 0, stride >= 1, num_frames >= 0; got "
                         f"start={start}, stride={stride}, num_frames={num_frames}")
    if isinstance(frame_times, str) and frame_times != PROBE:
        raise ValueError(f"read_video: frame_times is FrameTimes, None or {PROBE!r}; got {frame_times!r}")
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream, path)
        height, width = stream.height, stream.width
        frames: list[np.ndarray] | None = [] if num_frames == 0 else None
        if frames is None and start > 0:
            times = _frame_times(container, stream, fps) if frame_times == PROBE else frame_times
            if times is None:
                frames = _read_after_seek(container, stream, fps, start, num_frames, stride)
            else:
                frames = _read_by_times(container, stream, times, start, num_frames, stride)
        if frames is None:
            if start > 0:
                container.seek(0, stream=stream)  # back to the first frame after an unusable seek
            frames = _read_sequential(container, stream, start, num_frames, stride)
    except av.FFmpegError as exc:
        raise VideoReadError(f"cannot decode video {path}: {exc}") from exc
    finally:
        container.close()
    if not frames:
        if start == 0 and num_frames != 0:
            raise VideoReadError(f"{path} contains no decodable frames")
        return torch.zeros(0, height, width, 3, dtype=torch.uint8), fps
    return torch.from_numpy(np.stack(frames)), fps


def _wanted(index: int, start: int, num_frames: int | None, stride: int) -> tuple[bool, bool]:
    """``(take this frame, stop after it)`` for frame ``index``."""
    if index < start or (index - start) % stride:
        return False, False
    k = (index - start) // stride
    return True, num_frames is not None and k + 1 >= num_frames


def _collect(indexed: Iterable[tuple[int, Any]], start: int, num_frames: int | None,
             stride: int) -> list[np.ndarray]:
    """The wanted frames (:func:`_wanted`) of ``(frame index, decoded frame)`` pairs, as RGB arrays."""
    frames: list[np.ndarray] = []
    for index, frame in indexed:
        take, done = _wanted(index, start, num_frames, stride)
        if take:
            frames.append(_frame_rgb(frame))
        if done:
            break
    return frames


def _read_sequential(container, stream, start: int, num_frames: int | None,
                     stride: int) -> list[np.ndarray]:
    return _collect(enumerate(container.decode(stream)), start, num_frames, stride)


class _UnsafeSeek(Exception):
    """Frame times after a seek cannot be trusted: decode from the start instead."""


def _seek_and_collect(container, stream, target: int, index_of: Callable[[int], int | None],
                      start: int, num_frames: int | None, stride: int) -> list[np.ndarray] | None:
    """Seek to the key frame at or before ``target`` (a pts), decode from there and index each
    frame by its pts (``index_of``); None if a frame has no index or the seek overshot ``start``."""
    container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)

    def indexed() -> Iterator[tuple[int, Any]]:
        first = True
        for frame in container.decode(stream):
            index = index_of(frame.pts) if frame.pts is not None else None
            if index is None or (first and index > start):
                raise _UnsafeSeek  # times and indices disagree
            first = False
            yield index, frame

    try:
        return _collect(indexed(), start, num_frames, stride)
    except _UnsafeSeek:
        return None


def _read_after_seek(container, stream, fps: float, start: int, num_frames: int | None,
                     stride: int) -> list[np.ndarray] | None:
    """A constant-rate stream: frame ``n`` is at ``origin + n / fps``; None if unsafe."""
    time_base = stream.time_base
    if time_base is None:
        return None
    origin = _origin(stream)
    target = int((origin + (start - 0.5) / fps) / time_base)
    return _seek_and_collect(container, stream, target, lambda pts: _index_at(pts, time_base, origin, fps),
                             start, num_frames, stride)


def _read_by_times(container, stream, times: FrameTimes, start: int, num_frames: int | None,
                   stride: int) -> list[np.ndarray] | None:
    """A stream whose frame times are known: frame ``n`` is at ``times.pts_of(n)``; None if unsafe."""
    if start >= len(times):
        return []
    target = times.pts_of(start)
    if start > 0:  # half way back to the frame before, as for a constant rate
        target -= (target - times.pts_of(start - 1)) // 2
    return _seek_and_collect(container, stream, target, times.index_of, start, num_frames, stride)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def to_uint8_frames(video: Tensor | np.ndarray) -> np.ndarray:
    """``(C, T, H, W)`` float in [-1, 1] (C = 1 or 3) or ``uint8`` ``(T, H, W, 3)`` -> ``uint8 (T, H, W, 3)``."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    video = video.detach().cpu()
    if video.dtype == torch.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"a uint8 video must be (T, H, W, 3); got {tuple(video.shape)}")
        return video.contiguous().numpy()
    if not video.is_floating_point() or video.ndim != 4 or video.shape[0] not in (1, 3):
        raise ValueError(f"a float video must be (C, T, H, W) with C in (1, 3); "
                         f"got {video.dtype} {tuple(video.shape)}")
    video = video.float().expand(3, -1, -1, -1)
    pixels = unit_range_to_uint8(video)
    return pixels.permute(1, 2, 3, 0).contiguous().numpy()  # (C, T, H, W) -> (T, H, W, C)


def _rate(fps: float) -> Fraction:
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def write_video(
    video: Tensor | np.ndarray,
    path: str | os.PathLike[str],
    fps: float,
    *,
    lossless: bool = False,
    crf: int = 18,
) -> Path:
    """Write a clip to ``path``; the suffix picks the format.

    * ``.mp4``: H.264 ``yuv420p`` (plays everywhere); odd widths/heights get one replicated
      edge pixel, since 4:2:0 chroma needs even sizes. ``lossless=True`` writes RGB H.264
      (``libx264rgb``, crf 0) instead: exact pixels, but fewer players open it.
    * ``.mkv``: FFV1, always lossless.
    * ``.gif``: Pillow, 256-colour palette per frame, delays in 10 ms steps.

    ``video`` is ``(C, T, H, W)`` float in [-1, 1] or ``uint8`` ``(T, H, W, 3)``. Parent folders
    are created. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise UserError(f"cannot write '{path}': unsupported video type '{path.suffix}' "
                        f"(use one of {', '.join(WRITABLE_SUFFIXES)})")
    frames = to_uint8_frames(video)
    if frames.shape[0] == 0:
        raise ValueError(f"cannot write '{path}': the video has no frames")
    rate = _rate(fps)
    with atomic_path(path) as tmp:  # complete or not at all; the previous file is kept if it fails
        if suffix == ".gif":
            _write_gif(frames, tmp, float(rate))
        elif suffix == ".mkv":
            _encode(frames, tmp, rate, codec="ffv1", pix_fmt="bgr0", options={})
        elif lossless:
            _encode(frames, tmp, rate, codec="libx264rgb", pix_fmt="rgb24",
                    options={"crf": "0", "preset": "medium"})
        else:
            _encode(_pad_even(frames), tmp, rate, codec="libx264", pix_fmt="yuv420p",
                    options={"crf": str(crf), "preset": "medium"})
    return path


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """Replicate the last row/column so height and width are even (``(T, H, W, 3)``)."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode(frames: np.ndarray, path: Path, rate: Fraction, *, codec: str, pix_fmt: str,
            options: dict[str, str]) -> None:
    _, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(10, round(1000.0 / fps)), optimize=False)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def video_grid(
    videos: Tensor | Sequence[Tensor],
    *,
    nrow: int = 8,
    labels: Sequence[str] | None = None,
    padding: int = 2,
    pad_value: float = 1.0,
    label_position: str = "top",
) -> Tensor:
    """Tile ``N`` clips ``(N, C, T, H, W)`` into one clip ``(C, T, H', W')``, ``nrow`` clips per row.

    Cells are filled row by row and separated by ``padding`` pixels of ``pad_value`` (white by
    default). With ``labels`` (one string per clip), a band of text drawn with Pillow sits
    ``"top"`` or ``"bottom"`` of each cell; text wider than the cell is cut short.
    """
    if not isinstance(videos, Tensor):
        videos = torch.stack(list(videos))
    if videos.ndim != 5:
        raise ValueError(f"video_grid expects (N, C, T, H, W); got {tuple(videos.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"video_grid: need nrow >= 1 and padding >= 0; got {nrow}, {padding}")
    if label_position not in ("top", "bottom"):
        raise ValueError(f"label_position must be 'top' or 'bottom', got {label_position!r}")
    n, c, t, h, w = videos.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"video_grid: {len(labels)} labels for {n} clips")
    videos = videos.detach().float()
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    band = _label_band_height(w) if labels is not None else 0
    cell_h = h + band
    grid = torch.full((c, t, rows * (cell_h + padding) + padding, cols * (w + padding) + padding),
                      pad_value, dtype=videos.dtype, device=videos.device)
    for k in range(n):
        y = padding + (k // cols) * (cell_h + padding)
        x = padding + (k % cols) * (w + padding)
        clip_y = y + band if label_position == "top" else y
        grid[:, :, clip_y:clip_y + h, x:x + w] = videos[k]
        if labels is not None:
            band_y = y if label_position == "top" else y + h
            ink = _text_mask(str(labels[k]), width=w, height=band).to(grid)  # (band, w) in [0, 1]
            text_value = -1.0 if pad_value > 0 else 1.0
            grid[:, :, band_y:band_y + band, x:x + w] = pad_value + (text_value - pad_value) * ink
    return grid


def grid_cells(
    height: int,
    width: int,
    *,
    nrow: int,
    count: int | None = None,
    clip_height: int | None = None,
    labelled: bool = False,
    padding: int = 2,
) -> list[tuple[int, int, int, int]]:
    """Where :func:`video_grid` (labels on top) put each clip of a ``height`` x ``width`` grid.

    Returns one ``(top, left, clip_height, clip_width)`` box per clip, label band excluded, in the
    order the clips were given. Give ``count`` (the number of clips), ``clip_height`` (then, without
    ``count``, the grid is taken as ``nrow`` clips per row, every row full) or both (checked against
    each other). Raises ``ValueError`` when no grid of that kind has this size.
    """
    if (count is None and clip_height is None) or nrow < 1:
        raise ValueError("grid_cells: give nrow >= 1 and count or clip_height")
    cols = nrow if count is None else min(nrow, count)
    w, rest = divmod(width - padding, max(cols, 1))
    w -= padding
    band = _label_band_height(w) if labelled and w > 0 else 0
    if clip_height is None:
        rows = math.ceil(count / cols) if count else 0  # type: ignore[operator]
        cell_h, rest_h = divmod(height - padding, max(rows, 1))
        h = cell_h - padding - band
    else:
        h = int(clip_height)
        fit, rest_h = divmod(height - padding, h + band + padding) if h > 0 else (0, 1)
        rows = fit if count is None else math.ceil(count / cols) if count else 0
        rest_h = rest_h or int(rows != fit)
        count = rows * cols if count is None else count
    if rest or rest_h or w <= 0 or h <= 0 or rows <= 0:
        raise ValueError(f"grid_cells: a {width}x{height} image is not a grid of {count} clips, "
                         f"{nrow} per row, padding {padding}{', labelled' if labelled else ''}")
    return [(padding + (k // cols) * (h + band + padding) + band, padding + (k % cols) * (w + padding), h, w)
            for k in range(count)]


def _font_size(width: int) -> int:
    return int(min(16, max(10, width // 8)))


def _label_band_height(width: int) -> int:
    return math.ceil(_font_size(width) * 1.25) + 2


def _text_mask(text: str, *, width: int, height: int) -> Tensor:
    """Coverage ``(height, width)`` in [0, 1] of ``text`` drawn left-aligned; cut to fit."""
    font = ImageFont.load_default(size=_font_size(width))
    shown = text
    while shown and font.getlength(shown) > width - 2:
        shown = shown[:-1]
    if shown != text and len(shown) > 2:
        shown = shown[:-2] + ".."
    image = Image.new("L", (width, height), 0)
    if shown:
        top, bottom = font.getbbox("Ahjgy")[1::2]  # one baseline for every label
        y = (height - (bottom - top)) // 2 - top  # centred vertically in the band
        ImageDraw.Draw(image).text((1, y), shown, fill=255, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)


def write_grid(
    videos: Tensor | Sequence[Tensor],
    path: str | os.PathLike[str],
    *,
    fps: float,
    nrow: int = 8,
    labels: Sequence[str] | None = None,
    padding: int = 2,
    lossless: bool = False,
) -> Path:
    """Tile ``videos`` ``(N, C, T, H, W)`` with :func:`video_grid` and write the result to ``path``."""
    grid = video_grid(videos, nrow=nrow, labels=labels, padding=padding)
    return write_video(grid, path, fps, lossless=lossless)


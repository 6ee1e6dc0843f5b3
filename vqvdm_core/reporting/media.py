"""Pictures the report derives from a run's media, written under ``runs/<name>/report_files/``.

A stage writes its clips as one labelled grid (``sample/grid.gif``, ``tokenizer/val/recon_*.gif``),
whose captions are cut to the width of a clip. The report shows the clips one by one instead, with
HTML captions: this module cuts a grid GIF back into its clips (:func:`vqvdm_core.io.video.grid_cells`
gives where :func:`~vqvdm_core.io.video.video_grid` put them) and writes each as a GIF, or as a strip
of a few of its frames side by side (a picture that shows motion without playing). It also redraws
a stage's training curves from its ``metrics.jsonl`` when the stage's own plot is an older layout.

Every file is rewritten only when its source is newer, so rebuilding a report costs little. Only
Pillow and numpy are needed (no torch), so ``vqvdm report`` stays quick to start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqvdm_core.io.atomic import atomic_path

FOLDER = "report_files"
"""The report's own pictures, inside the run directory (so the run stays self-contained)."""

GAP = 2
"""White pixels between the frames of a strip."""


def is_fresh(out: Path, *sources: Path) -> bool:
    """Whether ``out`` exists and is at least as new as every existing source."""
    try:
        made = out.stat().st_mtime
    except OSError:
        return False
    return all(made >= s.stat().st_mtime for s in sources if s.exists())


def gif_frames(path: Path) -> tuple[list[np.ndarray], int]:
    """Every frame of a GIF as ``(H, W, 3)`` uint8 arrays, and the first frame's duration in ms."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        duration = int(image.info.get("duration") or 100)
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    return frames, max(10, duration)


def crop_clips(frames: Sequence[np.ndarray], boxes: Sequence[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The clips at ``boxes`` (``(top, left, height, width)``) of a grid's frames: ``(T, h, w, 3)`` each."""
    stack = np.stack(frames)
    return [stack[:, t:t + h, x:x + w] for t, x, h, w in boxes]


def save_gif(clip: np.ndarray, path: Path, *, duration: int) -> Path:
    """Write ``clip`` ``(T, H, W, 3)`` as a looping GIF (``duration`` ms per frame)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in clip]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=duration,
                       optimize=False)
    return path


def frame_indices(length: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``length`` frames, first and last included."""
    if length <= count:
        return list(range(length))
    return sorted({int(round(i)) for i in np.linspace(0, length - 1, count)})


def save_strip(clip: np.ndarray, path: Path, indices: Sequence[int]) -> Path:
    """Write frames ``indices`` of ``clip`` side by side (``GAP`` white pixels apart) as a PNG."""
    from PIL import Image

    _, h, w, _ = clip.shape
    strip = np.full((h, len(indices) * (w + GAP) - GAP, 3), 255, dtype=np.uint8)
    for i, index in enumerate(indices):
        strip[:, i * (w + GAP):i * (w + GAP) + w] = clip[index]
    with atomic_path(path) as tmp:
        Image.fromarray(strip).save(tmp, format="PNG")
    return path


def clip_gifs(grid: Path, out_dir: Path, boxes: Sequence[tuple[int, int, int, int]],
              keep: Sequence[int]) -> list[Path]:
    """Clips ``keep`` of the grid GIF ``grid`` as ``out_dir/clip_<k>.gif``, made again only when stale."""
    paths = [out_dir / f"clip_{k:03d}.gif" for k in keep]
    if all(is_fresh(p, grid) for p in paths):
        return paths
    frames, duration = gif_frames(grid)
    clips = crop_clips(frames, [boxes[k] for k in keep])
    return [save_gif(clip, path, duration=duration) for clip, path in zip(clips, paths)]


def clip_strips(grid: Path, out_dir: Path, boxes: Sequence[tuple[int, int, int, int]], keep: Sequence[int],
                *, frames: int) -> tuple[list[Path], list[int], int]:
    """Clips ``keep`` of the grid GIF ``grid`` as strips of ``frames`` frames (``out_dir/clip_<k>.png``).

    Returns the strips, the frame indices shown and the clips' length in frames.
    """
    video, _ = gif_frames(grid)
    indices = frame_indices(len(video), frames)
    paths = [out_dir / f"clip_{k:03d}.png" for k in keep]
    if not all(is_fresh(p, grid) for p in paths):
        clips = crop_clips(video, [boxes[k] for k in keep])
        for clip, path in zip(clips, paths):
            save_strip(clip, path, indices)
    return paths, indices, len(video)


def curves(run: Path, stage: str) -> Path | None:
    """The stage's training curves in the current layout: its own ``loss_curves.png`` when drawn by
    this version, else a plot redrawn from its ``metrics.jsonl`` into ``report_files/`` (kept until
    the log changes); None when there is nothing to plot."""
    from vqvdm_core.reporting.plots import is_current, plot_loss_curves

    own = run / stage / "loss_curves.png"
    log = run / stage / "metrics.jsonl"
    if is_current(own) and is_fresh(own, log):
        return own
    redrawn = run / FOLDER / f"{stage}_curves.png"
    if is_current(redrawn) and is_fresh(redrawn, log):
        return redrawn
    history = _read_jsonl(log)
    if not history:
        return own if own.is_file() else None
    return plot_loss_curves(history, redrawn, title=stage)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by an interrupted write
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records

"""Clips per second that the file data sets deliver, against what a GPU's training step consumes (issue 28).

    python benchmarks/data_throughput.py [--folder /tmp/vqvdm-videos] [--videos 16] [--clips 96] \
        [--workers 0 1 2 4] [--consume FILE | --gpu-tflops 100] [--out data_throughput.json]

The videos are UCF-101-shaped: 320x240 at 25 fps, 175 frames (7 s, UCF-101's mean length), a
moving textured scene with sensor noise so that the codecs work as they do on footage, written
once with PyAV as AVI (MPEG-4 Part 2, as UCF-101's XviD) and as MP4 (H.264). The ``video_folder``
data set then serves 16x128x128 clips from random positions (decode, shorter side to 128,
centre crop, to float in [-1, 1]) through a ``DataLoader`` with 0 (in the training process), 1,
2, ... worker processes at batch 8, as the training stages load them: clips/s after the first
batch (worker start-up is not counted), and per worker.

What a training step consumes: the paper-shape VQGAN step's clips/s from
``benchmarks/training_step.py --out FILE`` run on the GPU (``--consume FILE``), else an
assumption stated in the output: the step's FLOPs per clip (11,917 GFLOP, measured with
``torch.utils.flop_counter`` at the paper's shapes; docs/performance.md) at ``--gpu-tflops``
sustained. Where the loader cannot keep up with that, the run is data-bound: more workers, or a
prepared-clip cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from _common import conditions, say, write_json
from vqvdm_core.data.collate import collate_clips
from vqvdm_core.registry import REGISTRY

TOKENIZER_GFLOP_PER_CLIP = 11_917.0
"""One paper-shape VQGAN training step (generator and discriminator, GAN terms on) per 16x128x128
clip, counted by torch.utils.flop_counter (docs/performance.md, "Training steps and the latent cache")."""

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 25, 175


def scene(i: int, rng: np.random.Generator) -> np.ndarray:
    """Frame ``i``: a drifting textured background and a moving square, with noise (uint8 (H, W, 3))."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = 128 + 60 * np.sin((x + 2 * i) / 17.0) * np.cos((y - i) / 23.0)
    frame = np.stack([base, np.roll(base, 40, axis=1), 255 - base], axis=-1)
    top, left = (40 + 3 * i) % (HEIGHT - 60), (20 + 5 * i) % (WIDTH - 60)
    frame[top:top + 60, left:left + 60] = (230, 40, 40)
    frame = frame + rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_videos(folder: Path, count: int, frames: int = FRAMES) -> dict[str, Path]:
    """``count`` videos of ``frames`` frames per format under ``folder/avi/class_k`` and ``folder/mp4/class_k``."""
    roots = {}
    for fmt, codec in (("avi", "mpeg4"), ("mp4", "libx264")):
        root = folder / fmt
        roots[fmt] = root
        for v in range(count):
            path = root / f"class_{v % 4}" / f"video_{v:03d}.{fmt}"
            if path.is_file():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(v)
            with av.open(str(path), mode="w") as container:
                stream = container.add_stream(codec, rate=Fraction(FPS))
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
                stream.options = {"g": "12", "qscale": "4"} if codec == "mpeg4" else {"g": "25", "crf": "23"}
                for i in range(frames):
                    for packet in stream.encode(av.VideoFrame.from_ndarray(scene(i + 7 * v, rng), format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    return roots


def delivered(root: Path, *, workers: int, clips: int, batch: int, frames: int, size: int) -> dict[str, Any]:
    videos = len(list(root.rglob(f"*.{root.name}")))
    dataset = REGISTRY.create("dataset", "video_folder", root=str(root), frames=frames, size=size, random_clip=True,
                              clips_per_video=max(1, -(-(clips + batch) // videos)), cache_index=False)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_clips,
                        persistent_workers=False, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    first = time.perf_counter()
    next(it)  # worker start-up and the first batch: not counted
    start = time.perf_counter()
    got = 0
    for batch_ in it:
        got += batch_["video"].shape[0]
        if got >= clips:
            break
    seconds = time.perf_counter() - start
    del it
    rate = got / seconds if seconds > 0 else float("nan")
    return {"workers": workers, "clips": got, "seconds": round(seconds, 3), "clips_per_second": round(rate, 2),
            "clips_per_second_per_worker": round(rate / max(1, workers), 2),
            "first_batch_seconds": round(start - first, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/vqvdm-videos"))
    parser.add_argument("--videos", type=int, default=16, help="videos per format")
    parser.add_argument("--clips", type=int, default=96, help="clips timed per setting")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--video-frames", type=int, default=FRAMES, help="frames per written video")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts (default: 0, 1, 2 and powers of two up to the cores)")
    parser.add_argument("--consume", type=Path, default=None,
                        help="benchmarks/training_step.py --tokenizer JSON measured on the GPU")
    parser.add_argument("--gpu-tflops", type=float, default=100.0,
                        help="assumed sustained TFLOP/s of the tokenizer step when --consume is not given")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    workers = args.workers or sorted({0, 1, 2, *[2 ** k for k in range(1, 8) if 2 ** k <= cores]})
    say(f"writing {args.videos} videos per format ({WIDTH}x{HEIGHT}, {args.video_frames} frames at {FPS} fps) "
        f"to {args.folder}")
    roots = write_videos(args.folder, args.videos, args.video_frames)
    results: dict[str, Any] = {"conditions": conditions(torch.device("cpu")), "cpu_count": cores,
                               "source": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "frames": args.video_frames,
                                          "videos_per_format": args.videos,
                                          "bytes": {f: sum(p.stat().st_size for p in r.rglob(f"*.{f}"))
                                                    for f, r in roots.items()}},
                       "clip": [3, args.frames, args.size, args.size], "batch": args.batch, "formats": {}}
    torch.set_num_threads(1)  # what one loader process has; the training process keeps its own threads
    for fmt, root in roots.items():
        rows = []
        for n in workers:
            row = delivered(root, workers=n, clips=args.clips, batch=args.batch, frames=args.frames, size=args.size)
            say(f"{fmt}: {n} workers: {row['clips_per_second']:.1f} clips/s ({row['clips_per_second_per_worker']:.1f} per worker)")
            rows.append(row)
        results["formats"][fmt] = rows
    if args.consume is not None:
        measured = json.loads(args.consume.read_text())
        step = measured["steps"]["tokenizer"]
        consumed = {"clips_per_second": step["clips_per_second"], "source": f"measured: {args.consume}",
                    "device": measured["conditions"]["device"], "batch": measured.get("tokenizer_batch")}
    else:
        consumed = {"clips_per_second": args.gpu_tflops * 1e3 / TOKENIZER_GFLOP_PER_CLIP,
                    "source": f"assumed: {TOKENIZER_GFLOP_PER_CLIP:.0f} GFLOP per clip at {args.gpu_tflops:g} "
                              "TFLOP/s sustained (not measured on a GPU)"}
    results["tokenizer_step_consumes"] = consumed
    need = consumed["clips_per_second"]
    for fmt, rows in results["formats"].items():
        enough = [r["workers"] for r in rows if r["clips_per_second"] >= need]
        per_worker = max(r["clips_per_second_per_worker"] for r in rows if r["workers"] > 0) if any(
            r["workers"] for r in rows) else rows[0]["clips_per_second"]
        results.setdefault("verdict", {})[fmt] = {
            "fewest_workers_that_keep_up": min(enough) if enough else None,
            "workers_needed_at_the_best_per_worker_rate": round(need / per_worker, 1) if per_worker else None}
    write_json(results, args.out)
    say(f"the tokenizer step consumes {need:.1f} clips/s ({consumed['source']})")
    for fmt, verdict in results["verdict"].items():
        say(f"{fmt}: {verdict}")


if __name__ == "__main__":
    main()

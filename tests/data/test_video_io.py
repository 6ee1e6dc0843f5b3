"""Reading, writing and tiling video (vqvdm_core.io.video)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from video_factory import HEIGHT, WIDTH, frame_index, frame_pixels, make_corrupt, make_video

from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_core.io.video import (
    VideoReadError,
    probe_video,
    read_video,
    to_uint8_frames,
    video_grid,
    write_grid,
    write_video,
)


def random_clip(t: int = 6, h: int = 16, w: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, t, h, w, generator=g) * 2 - 1


def smooth_clip(t: int = 8, h: int = 32, w: int = 48) -> torch.Tensor:
    """Gradients that drift over time: easy for a lossy codec."""
    y = torch.linspace(-1, 1, h)[:, None]
    x = torch.linspace(-1, 1, w)[None, :]
    frames = [torch.stack([0.8 * x.expand(h, w) + 0.02 * k, 0.8 * y.expand(h, w),
                           0.5 * (x * y) - 0.03 * k]) for k in range(t)]
    return torch.stack(frames, dim=1).clamp(-1, 1)  # (3, T, H, W)


# ---- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,lossless", [(".mkv", False), (".mp4", True)])
def test_lossless_round_trip_is_exact(tmp_path: Path, suffix: str, lossless: bool) -> None:
    clip = random_clip(h=15, w=21)  # odd sizes are fine for the RGB codecs
    path = write_video(clip, tmp_path / f"clip{suffix}", 12.5, lossless=lossless)
    frames, fps = read_video(path)
    expected = ((clip + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    assert frames.shape == (6, 15, 21, 3)
    assert torch.equal(frames, expected)
    assert fps == pytest.approx(12.5)


def test_lossy_mp4_round_trip_is_close_and_keeps_fps(tmp_path: Path) -> None:
    clip = smooth_clip()
    path = write_video(clip, tmp_path / "clip.mp4", 15.0)
    frames, fps = read_video(path)
    assert frames.shape == (8, 32, 48, 3)
    assert fps == pytest.approx(15.0)
    error = (frames.float() - torch.from_numpy(to_uint8_frames(clip)).float()).abs()
    assert error.mean() < 3.0  # grey levels out of 255
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"


def test_mp4_with_odd_size_is_padded_to_even_by_replicating_the_edge(tmp_path: Path) -> None:
    clip = smooth_clip(t=4, h=31, w=45)
    frames, _ = read_video(write_video(clip, tmp_path / "odd.mp4", 8.0))
    assert frames.shape == (4, 32, 46, 3)
    source = torch.from_numpy(to_uint8_frames(clip)).float()
    assert (frames[:, :31, :45].float() - source).abs().mean() < 3.0
    # The added row / column repeat the last ones.
    assert (frames[:, 31].float() - frames[:, 30].float()).abs().mean() < 3.0
    assert (frames[:, :, 45].float() - frames[:, :, 44].float()).abs().mean() < 3.0


def test_gif_has_every_frame_its_delay_and_close_colours(tmp_path: Path) -> None:
    t = 5
    frames = np.stack([np.full((12, 16, 3), (40 * k, 200 - 30 * k, 90), dtype=np.uint8) for k in range(t)])
    path = write_video(torch.from_numpy(frames), tmp_path / "clip.gif", 10.0)
    with Image.open(path) as gif:
        assert gif.n_frames == t
        assert gif.info["duration"] == 100  # ms per frame at 10 fps
        decoded = []
        for k in range(t):
            gif.seek(k)
            decoded.append(np.asarray(gif.convert("RGB")))
    assert np.abs(np.stack(decoded).astype(int) - frames.astype(int)).max() <= 8


def test_float_and_uint8_inputs_write_the_same_pixels(tmp_path: Path) -> None:
    clip = random_clip(t=3, h=8, w=8)
    as_uint8 = torch.from_numpy(to_uint8_frames(clip))
    a, _ = read_video(write_video(clip, tmp_path / "a.mkv", 5.0))
    b, _ = read_video(write_video(as_uint8, tmp_path / "b.mkv", 5.0))
    assert torch.equal(a, b)
    grey = clip[:1]  # (1, T, H, W): written as grey RGB
    c, _ = read_video(write_video(grey, tmp_path / "c.mkv", 5.0))
    assert torch.equal(c[..., 0], c[..., 2])


def test_write_rejects_an_unknown_suffix_naming_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"\.avi.*\.mp4"):
        write_video(random_clip(), tmp_path / "clip.avi", 8.0)


def test_write_rejects_a_float_video_in_the_file_layout() -> None:
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        to_uint8_frames(torch.zeros(4, 8, 8, 3))


# ---- reading -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gop4_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames at 25 fps with a key frame every 4 frames: reads from the middle seek."""
    return make_video(tmp_path_factory.mktemp("gop") / "v.mp4", 24, 25.0, gop=4)


def test_read_video_returns_uint8_frames_in_order_and_the_fps(gop4_video: Path) -> None:
    frames, fps = read_video(gop4_video)
    assert frames.dtype == torch.uint8 and frames.shape == (24, HEIGHT, WIDTH, 3)
    assert fps == pytest.approx(25.0)
    assert [frame_index(f) for f in frames] == list(range(24))
    assert (frames[3].float() - torch.from_numpy(frame_pixels(3)).float()).abs().mean() < 2.0


@pytest.mark.parametrize("start,count,stride", [(0, 5, 1), (9, 4, 1), (6, 5, 3), (13, 3, 2),
                                                 (23, 1, 1), (20, 10, 1)])
def test_reading_a_range_equals_slicing_the_full_decode(gop4_video: Path, start: int, count: int,
                                                        stride: int) -> None:
    full, _ = read_video(gop4_video)
    part, _ = read_video(gop4_video, start=start, num_frames=count, stride=stride)
    assert torch.equal(part, full[start:start + count * stride:stride])


def test_reading_past_the_end_returns_no_frames(gop4_video: Path) -> None:
    part, _ = read_video(gop4_video, start=30, num_frames=4)
    assert part.shape == (0, HEIGHT, WIDTH, 3)


def test_probe_reads_the_frame_count_and_fps_from_the_container(gop4_video: Path) -> None:
    assert probe_video(gop4_video) == (24, pytest.approx(25.0))


def test_probe_counts_frames_by_decoding_when_the_container_does_not_say(tmp_path: Path) -> None:
    path = write_video(random_clip(t=7, h=8, w=8), tmp_path / "nocount.mkv", 6.0)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores no frame count
    assert probe_video(path) == (7, pytest.approx(6.0))


def test_missing_file_is_a_missing_file_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(MissingFileError, match="nowhere.mp4"):
        read_video(path)
    with pytest.raises(MissingFileError, match="nowhere.mp4"):
        probe_video(path)


def test_corrupt_file_is_a_video_read_error_naming_it(tmp_path: Path) -> None:
    path = make_corrupt(tmp_path / "junk.mp4")
    with pytest.raises(VideoReadError, match="junk.mp4"):
        read_video(path)
    with pytest.raises(VideoReadError, match="junk.mp4"):
        probe_video(path)


# ---- grids -------------------------------------------------------------------------------------


def test_grid_tiles_clips_row_by_row_with_padding() -> None:
    n, t, h, w, pad = 5, 2, 6, 7, 1
    videos = torch.stack([torch.full((3, t, h, w), -0.9 + 0.3 * k) for k in range(n)])
    grid = video_grid(videos, nrow=3, padding=pad, pad_value=1.0)
    assert grid.shape == (3, t, 2 * (h + pad) + pad, 3 * (w + pad) + pad)
    for k in range(n):
        row, col = divmod(k, 3)
        y, x = pad + row * (h + pad), pad + col * (w + pad)
        assert torch.equal(grid[:, :, y:y + h, x:x + w], videos[k])
    covered = torch.zeros(grid.shape[-2:], dtype=torch.bool)
    for k in range(n):
        row, col = divmod(k, 3)
        y, x = pad + row * (h + pad), pad + col * (w + pad)
        covered[y:y + h, x:x + w] = True
    assert torch.all(grid[:, :, ~covered] == 1.0)  # padding and the empty sixth cell


def test_grid_labels_draw_text_in_a_band_above_each_cell() -> None:
    videos = torch.zeros(2, 3, 2, 40, 48)
    plain = video_grid(videos, nrow=2, padding=2)
    a = video_grid(videos, nrow=2, padding=2, labels=["walk", "run"])
    b = video_grid(videos, nrow=2, padding=2, labels=["jump", "swim"])
    band = a.shape[-2] - plain.shape[-2]
    assert band > 0 and a.shape == b.shape
    cells = slice(2 + band, 2 + band + 40)
    # The clips are untouched, below a band that holds ink and differs with the text.
    assert torch.equal(a[:, :, cells], b[:, :, cells])
    assert torch.all(a[:, :, cells, 2:50] == 0)
    text_a, text_b = a[:, :, 2:2 + band], b[:, :, 2:2 + band]
    assert (text_a < 0.5).any()
    assert not torch.equal(text_a, text_b)
    # The band is the same in every frame.
    assert torch.equal(text_a[:, 0], text_a[:, 1])


def test_grid_labels_can_sit_below_each_cell() -> None:
    videos = torch.zeros(1, 3, 1, 30, 40)
    top = video_grid(videos, nrow=1, padding=0, labels=["x"], label_position="top")
    bottom = video_grid(videos, nrow=1, padding=0, labels=["x"], label_position="bottom")
    band = top.shape[-2] - 30
    assert torch.equal(top[:, :, band:], videos[0])
    assert torch.equal(bottom[:, :, :30], videos[0])
    assert torch.equal(bottom[:, :, 30:], top[:, :, :band])


def test_grid_refuses_a_label_count_that_does_not_match() -> None:
    with pytest.raises(ValueError, match="2 labels for 3 clips"):
        video_grid(torch.zeros(3, 3, 1, 8, 8), labels=["a", "b"])


def test_write_grid_writes_mp4_and_gif_of_the_grid(tmp_path: Path) -> None:
    videos = torch.stack([smooth_clip(t=4, h=16, w=16) * s for s in (1.0, -1.0, 0.5)])
    grid = video_grid(videos, nrow=2, labels=["a", "b", "c"])
    mp4 = write_grid(videos, tmp_path / "g.mp4", fps=8.0, nrow=2, labels=["a", "b", "c"])
    gif = write_grid(videos, tmp_path / "g.gif", fps=8.0, nrow=2, labels=["a", "b", "c"])
    frames, fps = read_video(mp4)
    h, w = grid.shape[-2:]
    assert frames.shape == (4, h + h % 2, w + w % 2, 3) and fps == pytest.approx(8.0)
    assert (frames[:, :h, :w].float() - torch.from_numpy(to_uint8_frames(grid)).float()).abs().mean() < 4
    with Image.open(gif) as image:
        assert image.size == (w, h) and image.n_frames == 4


FORKED_WORKERS = """
import sys
from torch.utils.data import DataLoader
from vqvdm_core.data.collate import collate_clips
from vqvdm_core.io.video import read_video
from vqvdm_core.registry import REGISTRY

data = REGISTRY.create("dataset", "video_folder", root=sys.argv[1], frames=4, size=16, random_clip=True,
                       clips_per_video=4, cache_index=False)
read_video(sys.argv[2], num_frames=4, start=2)  # the main process decodes first (validation clips)
loader = DataLoader(data, batch_size=2, num_workers=2, collate_fn=collate_clips)
print(sum(batch["video"].shape[0] for batch in loader))
"""


def test_forked_loader_workers_decode_after_the_main_process_did(tmp_path: Path) -> None:
    """libswscale's automatic thread pool, started by a conversion in the main process, deadlocked the
    forked DataLoader workers' first conversion (the stages read held-out clips before training with
    num_workers > 0): frames are converted with one thread, the workers giving the parallelism."""
    import os
    import signal
    import subprocess
    import sys

    for i in range(2):
        make_video(tmp_path / "videos" / "a" / f"v{i}.mp4", 12, 25.0)
    big = tmp_path / "videos" / "b" / "big.avi"  # a UCF-101-sized frame: the scaler starts threads for it
    _make_sized_video(big, width=320, height=240, num_frames=12)
    # In its own session: a hang (the bug) is killed with the workers it forked, not left behind.
    proc = subprocess.Popen([sys.executable, "-c", FORKED_WORKERS, str(tmp_path / "videos"), str(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the DataLoader workers hung decoding after the main process had decoded a video")
    assert proc.returncode == 0, stderr[-2000:]
    assert stdout.strip() == "12"  # 3 videos x 4 clips


def _make_sized_video(path: Path, *, width: int, height: int, num_frames: int) -> None:
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            pixels = np.full((height, width, 3), 10 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

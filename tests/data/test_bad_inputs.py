"""The bad inputs real data brings: link cycles and deep trees, variable-frame-rate files, and
files whose headers claim absurd frame sizes. Each is fed to the scan, the reader or a data set,
which must give the clips or one clear message, and leave every file as it was."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from video_factory import frame_index, make_frames, make_video
from vqvdm_plugins.datasets import FrameFolder, VideoFolder

from vqvdm_core.data import DataWarning
from vqvdm_core.data.scan import find_files, find_frame_folders, read_frame_files
from vqvdm_core.errors import UserError
from vqvdm_core.io.frame_size import MAX_FRAME_PIXELS
from vqvdm_core.io.video import VideoReadError, probe_frame_times, probe_video, read_video


def contents(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root``, links not followed: relative path -> (kind, link target or digest)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("dir", "")
    return out


@contextlib.contextmanager
def unchanged(root: Path) -> Iterator[None]:
    """Asserts that the block changes no file, link or folder under ``root``."""
    before = contents(root)
    yield
    assert contents(root) == before


def within(seconds: float, work):
    """``work()``'s result, failing the test if it takes longer than ``seconds`` (it may hang)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return result[0]


def relative(paths, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=target.is_dir())


# ---- links and trees ---------------------------------------------------------------------------


def test_a_tree_without_links_is_walked_parents_first_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ["z.mp4", "a/10.mp4", "a/2.mp4", "a/b/1.mp4", "b10/x.mp4", "B2/x.mp4", ".hidden/h.mp4",
                "a/._2.mp4", "a/notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    with unchanged(root):
        found = find_files(root, ["mp4"])
    assert relative(found, root) == ["z.mp4", "a/2.mp4", "a/10.mp4", "a/b/1.mp4", "B2/x.mp4", "b10/x.mp4"]


def test_a_link_to_the_parent_folder_does_not_repeat_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_video(root / "cat" / "a.mp4", 8, 10.0)
    link(root / "cat" / "up", root)  # followed 40 levels deep before: 41 clips of one video
    with unchanged(root):
        ds = VideoFolder(root=str(root), frames=4, size=16, index_cache=str(tmp_path / "c"))
    assert relative([r.path for r in ds.records], root) == ["cat/a.mp4"]
    assert ds.class_names == ["cat"] and len(ds) == 1 and not ds.skipped


def test_two_link_cycles_end_the_scan_quickly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ["cat/a.mp4", "dog/b.mp4"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"video")
    make_frames(root / "cat" / "v1", 3, pattern="{i}.png")
    link(root / "cat" / "up", root)  # with two cycles the old walk grew exponentially: it hung
    link(root / "cat" / "v1" / "self", root / "cat" / "v1")
    link(root / "dog" / "back", root / "cat")
    with unchanged(root):
        files = within(10, lambda: find_files(root, ["mp4"]))
        folders = within(10, lambda: find_frame_folders(root, ["png"]))
    assert relative(files, root) == ["cat/a.mp4", "dog/b.mp4"]
    assert [(f.relative_to(root).as_posix(), [p.name for p in frames]) for f, frames in folders] == [
        ("cat/v1", ["1.png", "2.png", "3.png"])]


def test_a_deep_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    folders = [tmp_path / "root"]
    for _ in range(1100):  # deeper than Python's recursion limit: os.walk raised RecursionError
        folders.append(folders[-1] / "d")
    for folder in folders:
        folder.mkdir()  # one at a time: mkdir(parents=True) recurses too
    clip = folders[-1] / "clip.mp4"
    clip.write_bytes(b"video")
    try:
        assert within(30, lambda: find_files(folders[0], ["mp4"])) == [clip]
    finally:  # from the bottom up: a recursive clean-up would fail as well
        clip.unlink()
        for folder in reversed(folders):
            folder.rmdir()


def test_links_to_data_stored_elsewhere_are_followed_and_each_real_file_found_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_video(store / "lion" / "l.mp4", 8, 10.0)
    root = tmp_path / "root"
    make_video(root / "cat" / "a.mp4", 8, 10.0)
    link(root / "lion", store / "lion")  # outside the root: followed
    link(root / "again" / "lion", store / "lion")  # a second path to it: passed over
    link(root / "cat" / "alias.mp4", root / "cat" / "a.mp4")  # a second path to a file
    os.link(root / "cat" / "a.mp4", root / "cat" / "hard.mp4")  # and a hard link
    link(root / "cat" / "broken.mp4", root / "nowhere.mp4")
    with unchanged(root), unchanged(store), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = VideoFolder(root=str(root), frames=4, size=16, index_cache=str(tmp_path / "c"))
    assert relative([r.path for r in ds.records], root) == ["cat/a.mp4", "lion/l.mp4"]
    assert {r.label for r in ds.records} == {ds.class_names.index("cat"), ds.class_names.index("lion")}
    assert relative(ds.skipped, root) == ["cat/broken.mp4"]  # a broken link is reported, not hidden
    assert "not found" in ds.skipped[str(root / "cat" / "broken.mp4")]


def test_beside_a_folder_a_link_to_it_is_the_one_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_video(root / "real" / "x.mp4", 8, 10.0)
    link(root / "alias", root / "real")  # sorts first, but the real folder keeps its name (label)
    ds = VideoFolder(root=str(root), frames=4, size=16, index_cache=str(tmp_path / "c"))
    assert relative([r.path for r in ds.records], root) == ["real/x.mp4"]
    assert ds.class_names == ["real"]


# ---- variable frame rate -----------------------------------------------------------------------

PAUSED = [*range(12), *range(28, 40)]
"""24 frames at 8 fps with a 2 s pause after the 12th (frame slots of 1/8 s)."""


@pytest.fixture(scope="module")
def vfr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paused.mp4`` (H.264, B-frames, a key frame every 4) and ``paused.mkv`` (the same,
    Matroska), both pausing 2 s; ``jitter.mp4``: a phone-like 30 fps with 33/34 ms steps and a
    1.5 s pause (slots in ms)."""
    root = tmp_path_factory.mktemp("vfr")
    make_video(root / "paused.mp4", len(PAUSED), 8.0, slots=PAUSED)
    make_video(root / "paused.mkv", len(PAUSED), 8.0, slots=PAUSED)
    steps = [33, 34, 33] * 3 + [1500] + [33, 34, 33] * 3
    jitter = [sum(steps[:k]) for k in range(len(steps) + 1)]
    make_video(root / "jitter.mp4", len(jitter), 1000.0, slots=jitter)
    return root


@pytest.mark.parametrize("name", ["paused.mp4", "paused.mkv", "jitter.mp4"])
def test_a_vfr_clip_read_after_a_seek_is_the_frames_decoded_in_order(vfr_root: Path, name: str) -> None:
    path = vfr_root / name
    with unchanged(vfr_root):
        full, _ = read_video(path)
        times = probe_frame_times(path)
        assert [frame_index(f) for f in full] == list(range(full.shape[0]))  # frames as stored
        assert times is not None and len(times) == full.shape[0] == probe_video(path)[0]
        for start in range(1, full.shape[0] + 1):
            for count, stride in [(4, 1), (3, 3)]:
                expected = full[start:start + count * stride:stride]
                assert torch.equal(read_video(path, start=start, num_frames=count, stride=stride)[0], expected)
                part, _ = read_video(path, start=start, num_frames=count, stride=stride, frame_times=times)
                assert torch.equal(part, expected)


def test_constant_rate_files_need_no_frame_times(tmp_path: Path) -> None:
    for path in [make_video(tmp_path / "h264.mp4", 24, 25.0), make_video(tmp_path / "h264.mkv", 20, 12.5),
                 make_video(tmp_path / "xvid.avi", 18, 25.0, codec="mpeg4")]:
        assert probe_frame_times(path) is None, path.name


def test_a_vfr_video_gives_every_clip_and_its_running_rate(vfr_root: Path, tmp_path: Path) -> None:
    def build() -> VideoFolder:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)  # nothing refused
            return VideoFolder(root=str(vfr_root), frames=6, size=16, random_clip=False, clips_per_video=4,
                               index_cache=str(tmp_path / "cache"))

    with unchanged(vfr_root):
        ds = build()
        assert not ds.skipped and len(ds) == 12
        items = [ds[i] for i in range(len(ds))]
        again = build()  # from the probe cache: the frame times come back with it
        assert all(torch.equal(again[i]["video"], item["video"]) for i, item in enumerate(items))
    fps = {Path(r.path).name: r.fps for r in ds.records}
    # 8 fps between the pauses; the mp4's container says 24 frames / 5 s = 4.8.
    assert fps == {"jitter.mp4": pytest.approx(1000 / 33), "paused.mkv": pytest.approx(8.0),
                   "paused.mp4": pytest.approx(8.0)}
    for k, item in enumerate(items):
        first = [0, 6, 12, 18][k % 4] if ds.records[k // 4].num_frames == 24 else None
        run = [frame_index(item["video"][:, t]) for t in range(6)]
        assert run == list(range(run[0], run[0] + 6)) and (first is None or run[0] == first)


# ---- decompression bombs -----------------------------------------------------------------------


def png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def y4m_header(path: Path, width: int, height: int) -> Path:
    """A tiny YUV4MPEG2 video whose stream header claims ``width`` x ``height``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F8:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + b"\x80" * 512)
    return path


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (9000, 9000)])
def test_a_frame_claiming_an_absurd_size_is_refused_naming_it(tmp_path: Path, width: int, height: int) -> None:
    root = tmp_path / "frames"
    make_frames(root / "clouds" / "v1", 6, pattern="{i:04d}.png")
    bomb = png_header(root / "clouds" / "v1" / "0003.png", width, height)
    assert width * height > MAX_FRAME_PIXELS
    files = sorted((root / "clouds" / "v1").iterdir())
    with unchanged(root):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # one message: no warning from PIL besides
            with pytest.raises(VideoReadError, match=rf"frame {re.escape(str(bomb))} .*8192x8192") as caught:
                read_frame_files(files, start=0, count=6)
        assert isinstance(caught.value, UserError)  # the CLI prints it without a traceback
        ds = FrameFolder(root=str(root), frames=4, size=16, random_clip=False)
        with pytest.warns(DataWarning, match=rf"skipping .*v1 \(unreadable: frame {re.escape(str(bomb))} "):
            with pytest.raises(VideoReadError, match="no readable clip.*0003.png"):
                ds[0]  # its only video is refused (and recorded), none stands in
    assert ds.skipped[str(root / "clouds" / "v1")].startswith(f"unreadable: frame {bomb}")


def test_a_video_stream_claiming_an_absurd_size_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    bomb = y4m_header(root / "bomb.y4m", 12_000, 12_000)
    make_video(root / "ok.mp4", 8, 10.0)
    message = rf"video {re.escape(str(bomb))} claims 12000x12000 pixels.*8192x8192"
    with unchanged(root):
        with pytest.raises(VideoReadError, match=message):
            probe_video(bomb)
        with pytest.raises(VideoReadError, match=message):
            read_video(bomb, start=2, num_frames=2)
        with pytest.warns(DataWarning, match="skipped 1 of 2"):
            ds = VideoFolder(root=str(root), extensions=["mp4", "y4m"], frames=4, size=16,
                             index_cache=str(tmp_path / "c"))
    assert relative([r.path for r in ds.records], root) == ["ok.mp4"]
    assert ds.skipped[str(bomb)].startswith(f"unreadable: video {bomb} claims 12000x12000")


# ---- file lists that name files outside their folder ----------------------------------------


@pytest.mark.parametrize(("entry", "why"), [
    ("/tmp/secret.avi 1", "is an absolute path"),
    ("..\\..\\secret.avi 1", "climbs out of its folder"),
    ("YoYo/../../../secret.avi", "climbs out of its folder"),
    ("C:/data/secret.avi 2", "is an absolute path"),
])
def test_a_split_list_entry_outside_the_video_folder_is_refused_before_any_work(
        ucf_root: Path, tmp_path: Path, entry: str, why: str) -> None:
    import shutil

    from vqvdm_plugins.datasets import UCF101

    root = tmp_path / "ucf"
    shutil.copytree(ucf_root, root)
    make_video(tmp_path / "secret.avi", 18, 25.0, codec="mpeg4")  # what the entry would reach
    listed = root / "ucfTrainTestlist" / "trainlist01.txt"
    listed.write_text(listed.read_text() + entry + "\r\n")
    line = len(listed.read_text().splitlines())
    config = UCF101.Config(root=str(root), index_cache=str(tmp_path / "cache"))
    with unchanged(tmp_path):
        [problem] = UCF101.missing_files(config)  # the preflight of `vqvdm run` / `validate`
        with pytest.raises(UserError) as refused:
            UCF101(config)
    for message in (problem, str(refused.value)):
        assert f"trainlist01.txt:{line}: the entry" in message and why in message
        assert "inside the video folder" in message
    assert not (tmp_path / "cache").exists()


def test_the_ucf101_folders_stay_inside_root(tmp_path: Path) -> None:
    from pydantic import ValidationError
    from vqvdm_plugins.datasets import UCF101

    for field, value in (("video_dir", "../videos"), ("split_dir", "/etc")):
        with pytest.raises(ValidationError, match=r"inside root"):
            UCF101.Config(root=str(tmp_path), **{field: value})
    assert UCF101.Config(root=str(tmp_path), video_dir="./UCF-101/").video_dir == "UCF-101"

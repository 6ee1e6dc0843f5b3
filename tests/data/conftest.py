"""Data set trees in the real layouts (UCF-101, Sky Time-lapse, class folders), generated per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from video_factory import make_corrupt, make_frames, make_video


@pytest.fixture(scope="session")
def video_tree_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ant/`` (only a too-short video), ``cat/`` (two good), ``dog/`` (one good, one corrupt),
    and ``loose.mp4`` directly in the root."""
    root = tmp_path_factory.mktemp("video_tree")
    make_video(root / "cat" / "a.mp4", 20, 10.0)
    make_video(root / "cat" / "b.mp4", 24, 25.0)
    make_video(root / "dog" / "c.mp4", 20, 12.5)
    make_corrupt(root / "dog" / "broken.mp4")
    make_video(root / "ant" / "short.mp4", 3, 10.0)
    make_video(root / "loose.mp4", 20, 10.0)
    return root


@pytest.fixture
def video_tree(video_tree_template: Path, tmp_path: Path) -> Path:
    """A private copy of the video tree (tests may delete or change files)."""
    root = tmp_path / "videos"
    shutil.copytree(video_tree_template, root)
    return root


@pytest.fixture(scope="session")
def ucf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature UCF-101 in the official layout: 3 classes x groups g01, g08 (xvid-like AVI).

    classInd deliberately lists the classes out of alphabetical order, and fold 2 swaps the
    train and test groups, so tests can see which list and which indices were used.
    """
    root = tmp_path_factory.mktemp("ucf")
    classes = ["YoYo", "ApplyEyeMakeup", "Basketball"]  # classInd order: YoYo is label 0
    for name in classes:
        for group in (1, 8):
            make_video(root / "UCF-101" / name / f"v_{name}_g{group:02d}_c01.avi", 18, 25.0,
                       codec="mpeg4")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    crlf = "\r\n"  # the official files use Windows line ends
    (lists / "classInd.txt").write_text(crlf.join(f"{i + 1} {n}" for i, n in enumerate(classes)) + crlf)

    def train(group: int) -> str:
        return crlf.join(f"{n}/v_{n}_g{group:02d}_c01.avi {i + 1}" for i, n in enumerate(classes)) + crlf

    def test(group: int) -> str:
        return crlf.join(f"{n}/v_{n}_g{group:02d}_c01.avi" for n in classes) + crlf

    (lists / "trainlist01.txt").write_text(train(8))
    (lists / "testlist01.txt").write_text(test(1))
    (lists / "trainlist02.txt").write_text(train(1))
    (lists / "testlist02.txt").write_text(test(8))
    # Fold 3 lists one file that does not exist.
    (lists / "trainlist03.txt").write_text(train(8) + "YoYo/v_YoYo_g99_c01.avi 1" + crlf)
    (lists / "testlist03.txt").write_text(test(1))
    return root


@pytest.fixture(scope="session")
def sky_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sky Time-lapse layout: sky_train/<video>/<clip>/<video>_<n>_frames_XXXXXXXX.jpg."""
    root = tmp_path_factory.mktemp("sky")
    make_frames(root / "sky_train" / "vidA" / "vidA_1", 20, pattern="vidA_1_frames_{i:08d}.jpg")
    make_frames(root / "sky_train" / "vidA" / "vidA_2", 5, pattern="vidA_2_frames_{i:08d}.jpg")
    make_frames(root / "sky_train" / "vidB" / "vidB_1", 18, pattern="vidB_1_frames_{i:08d}.jpg")
    make_frames(root / "sky_test" / "vidC" / "vidC_1", 17, pattern="vidC_1_frames_{i:08d}.jpg")
    return root


@pytest.fixture
def frame_tree(tmp_path: Path) -> Path:
    """Generic frame folders: ``zebra/v1`` (frames 1.png..12.png, unpadded names),
    ``apple/v2`` (10 frames), ``apple/v3`` (10 frames, frame 5 corrupt), ``v4`` (unlabelled)."""
    root = tmp_path / "frames"
    make_frames(root / "zebra" / "v1", 12, pattern="{i}.png")
    make_frames(root / "apple" / "v2", 10, pattern="f{i:03d}.jpg")
    make_frames(root / "apple" / "v3", 10, pattern="f{i:03d}.jpg")
    (root / "apple" / "v3" / "f005.jpg").write_bytes(b"not a jpeg at all")
    make_frames(root / "v4", 10, pattern="{i:04d}.png")
    return root

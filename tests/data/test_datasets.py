"""File-backed dataset plug-ins and the shared clip machinery (vqvdm_core.data)."""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from video_factory import frame_index, make_video
from vqvdm_plugins.datasets import UCF101, FrameFolder, SkyTimelapse, VideoFolder

from vqvdm_core.data import DataWarning, choose_start, collate_clips, frames_to_clip, resize_center_crop
import vqvdm_core.data.file_dataset as file_dataset
from vqvdm_core.errors import ComponentError, MissingFileError
from vqvdm_core.io.video import VideoReadError
from vqvdm_core.registry import REGISTRY


def quiet(factory, /, **kwargs):
    """Build a dataset, ignoring the skipped-videos summary warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return factory(**kwargs)


def indices(item: dict) -> list[int]:
    """Source frame index of every frame of an item's clip."""
    return [frame_index(item["video"][:, k]) for k in range(item["video"].shape[1])]


# ---- clip arithmetic ---------------------------------------------------------------------------


def test_fixed_clips_start_at_frame_zero_or_evenly_spaced() -> None:
    assert choose_start(20, frames=4, random_clip=False) == 0
    starts = [choose_start(20, frames=4, stride=2, random_clip=False, clip=k, clips_per_video=3)
              for k in range(3)]
    # A clip spans (4 - 1) * 2 + 1 = 7 frames, so the last start that fits is 13.
    assert starts == [0, round(13 / 2), 13]


def test_random_starts_cover_every_fitting_start_and_repeat_with_the_generator() -> None:
    def draw(g: torch.Generator) -> list[int]:
        return [choose_start(10, frames=4, random_clip=True, generator=g) for _ in range(200)]

    a = draw(torch.Generator().manual_seed(3))
    assert set(a) == set(range(7))
    assert a == draw(torch.Generator().manual_seed(3))


def test_a_video_shorter_than_the_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than a clip"):
        choose_start(6, frames=4, stride=2)


def test_resize_keeps_the_shorter_side_and_crops_the_centre() -> None:
    frames = torch.zeros(2, 24, 48, 3, dtype=torch.uint8)  # (T, H, W, 3), wide
    frames[:, :, 22:26] = 255  # a white bar in the middle columns
    frames[:, :, :4] = 128  # grey on the far left: cropped away
    clip = frames_to_clip(frames, 12)
    assert clip.shape == (3, 2, 12, 12) and clip.dtype == torch.float32
    assert clip.min() >= -1 and clip.max() <= 1
    # 24x48 -> 12x24, the centre crop keeps columns 6..17: the bar (now 11..12) lands on 5..6.
    column_means = clip[0, 0].mean(0)
    assert set(column_means.topk(2).indices.tolist()) == {5, 6}
    assert column_means[5] == pytest.approx(float(column_means[6])) and column_means[5] > 0.5
    assert column_means[:3].max() == pytest.approx(-1.0)


def test_uint8_maps_to_minus_one_and_one_exactly_without_resizing() -> None:
    frames = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(8).reshape(1, 4, 4, 1)
    clip = frames_to_clip(frames.expand(1, 4, 4, 3).contiguous(), 4)
    assert torch.equal(clip[0, 0, :2], torch.full((2, 4), -1.0))
    assert torch.equal(clip[0, 0, 2:], torch.full((2, 4), 1.0))


def test_the_fast_uint8_resize_matches_a_float_reference_within_one_grey_level() -> None:
    frames = torch.randint(0, 256, (3, 30, 40, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clip = frames_to_clip(frames, 15)  # 30x40 -> 15x20, crop columns 2..16
    reference = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).double(), size=(15, 20),
                                                mode="bilinear", antialias=True)[..., 2:17]
    reference = reference.permute(1, 0, 2, 3) / 127.5 - 1  # (T, C, H, W) -> (C, T, H, W)
    assert (clip.double() - reference).abs().max() * 127.5 <= 1.0


def test_resize_center_crop_keeps_a_constant_constant() -> None:
    video = torch.full((3, 2, 30, 50), 0.25)
    assert torch.allclose(resize_center_crop(video, 16), torch.full((3, 2, 16, 16), 0.25))


# ---- video_folder -----------------------------------------------------------------------------


def test_video_folder_classes_are_sorted_parent_folder_names(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree), frames=4, size=16, index_cache=str(tmp_path / "c"))
    assert ds.class_names == ["ant", "cat", "dog"]  # "ant" stays although its only video is skipped
    by_name = {Path(r.path).name: r.label for r in ds.records}
    assert by_name == {"a.mp4": 1, "b.mp4": 1, "c.mp4": 2, "loose.mp4": -1}
    assert ds.clip_shape == (4, 16, 16) and len(ds) == 4


def test_video_folder_reads_fps_from_each_container(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree), frames=4, size=16, random_clip=False,
               index_cache=str(tmp_path / "c"))
    fps = {Path(r.path).name: ds[i]["fps"] for i, r in enumerate(ds.records)}
    assert fps == {"a.mp4": pytest.approx(10.0), "b.mp4": pytest.approx(25.0),
                   "c.mp4": pytest.approx(12.5), "loose.mp4": pytest.approx(10.0)}


def test_corrupt_and_short_videos_are_skipped_counted_and_warned(video_tree: Path, tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="skipped 2 of 6 videos"):
        ds = VideoFolder(root=str(video_tree), frames=4, size=16, index_cache=str(tmp_path / "c"))
    reasons = {Path(p).name: r for p, r in ds.skipped.items()}
    assert set(reasons) == {"broken.mp4", "short.mp4"}
    assert reasons["broken.mp4"].startswith("unreadable:")
    assert reasons["short.mp4"].startswith("too short: 3 frames")
    assert ds.skip_counts() == {"too short": 1, "unreadable": 1}
    assert "2 skipped" in ds.summary()
    for i in range(len(ds)):  # a whole epoch
        assert ds[i]["video"].shape == (3, 4, 16, 16)


def test_frame_stride_takes_every_kth_frame_and_divides_the_fps(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree / "cat"), frames=4, size=16, frame_stride=3,
               random_clip=False, labelled=False, index_cache=str(tmp_path / "c"))
    item = ds[0]  # a.mp4, 10 fps
    assert indices(item) == [0, 3, 6, 9]
    assert item["fps"] == pytest.approx(10.0 / 3)
    assert item["label"] == -1 and ds.class_names is None


def test_fixed_clips_repeat_and_spread_evenly_over_the_video(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree / "cat"), frames=4, size=16, random_clip=False,
               clips_per_video=3, index_cache=str(tmp_path / "c"))
    assert len(ds) == 6
    # a.mp4 has 20 frames: starts 0, 8, 16 (the last start that fits).
    assert [indices(ds[k])[0] for k in range(3)] == [0, 8, 16]
    assert torch.equal(ds[1]["video"], ds[1]["video"])


def test_random_clips_vary_within_the_video_and_follow_the_torch_seed(video_tree: Path,
                                                                      tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree / "cat"), frames=4, size=16,
               index_cache=str(tmp_path / "c"))
    torch.manual_seed(0)
    starts = [indices(ds[0])[0] for _ in range(12)]
    assert len(set(starts)) > 3 and all(0 <= s <= 16 for s in starts)
    torch.manual_seed(0)
    assert [indices(ds[0])[0] for _ in range(12)] == starts
    run = indices(ds[0])
    assert run == list(range(run[0], run[0] + 4))  # contiguous frames


def test_a_video_that_fails_while_loading_is_replaced_and_counted(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree / "cat"), frames=4, size=16, random_clip=False,
               index_cache=str(tmp_path / "c"))
    gone = Path(ds.records[0].path)
    gone.unlink()  # deleted after indexing
    with pytest.warns(DataWarning, match="a.mp4"):
        item = ds[0]
    assert item["video"].shape == (3, 4, 16, 16)
    assert item["fps"] == pytest.approx(25.0)  # b.mp4 stood in
    assert ds.skipped[str(gone)].startswith("missing:")
    assert torch.equal(ds[0]["video"], item["video"])  # the same stand-in every time


def test_when_every_video_fails_the_error_says_so(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree / "cat"), frames=4, size=16,
               index_cache=str(tmp_path / "c"))
    for record in ds.records:
        Path(record.path).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(VideoReadError, match=r"no readable clip.*2 of 2 videos failed"):
            ds[0]


def test_missing_root_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(MissingFileError, match="no_such_folder.*does not exist"):
        VideoFolder(root=str(missing))


def test_empty_root_is_an_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(MissingFileError, match=r"no videos found under .*empty"):
        VideoFolder(root=str(tmp_path / "empty"))


def test_a_root_of_only_bad_videos_is_an_error_listing_why(video_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"no usable videos under .*ant.*1 too short"):
        VideoFolder(root=str(video_tree / "ant"), frames=4, index_cache=str(tmp_path / "c"))


def test_probe_results_are_cached_and_refreshed_when_a_file_changes(video_tree: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_probe = file_dataset.probe_video
    monkeypatch.setattr(file_dataset, "probe_video", lambda p: calls.append(Path(p).name) or real_probe(p))
    cache = str(tmp_path / "cache")
    quiet(VideoFolder, root=str(video_tree), frames=4, size=16, index_cache=cache)
    assert sorted(calls) == sorted(["a.mp4", "b.mp4", "c.mp4", "broken.mp4", "short.mp4", "loose.mp4"])
    calls.clear()
    again = quiet(VideoFolder, root=str(video_tree), frames=4, size=16, index_cache=cache)
    assert calls == []  # every answer came from the cache, failures included
    assert set(Path(p).name for p in again.skipped) == {"broken.mp4", "short.mp4"}
    make_video(video_tree / "ant" / "short.mp4", 9, 10.0)  # replaced by a longer video
    third = quiet(VideoFolder, root=str(video_tree), frames=4, size=16, index_cache=cache)
    assert calls == ["short.mp4"]
    assert "short.mp4" in {Path(r.path).name for r in third.records}


def test_datasets_survive_pickling_for_dataloader_workers(video_tree: Path, tmp_path: Path) -> None:
    ds = quiet(VideoFolder, root=str(video_tree), frames=4, size=16, random_clip=False,
               index_cache=str(tmp_path / "c"))
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[2]["video"], ds[2]["video"]) and copy.class_names == ds.class_names


# ---- frame_folder ----------------------------------------------------------------------------


def test_frame_folder_sorts_frames_by_number_and_labels_by_the_folder_above(frame_tree: Path) -> None:
    ds = quiet(FrameFolder, root=str(frame_tree), frames=12, size=16, random_clip=False, fps=7.5)
    assert ds.class_names == ["apple", "zebra"]
    by_name = {Path(r.path).name: r for r in ds.records}
    assert {n: r.label for n, r in by_name.items()} == {"v1": 1}  # the others have 10 < 12 frames
    item = ds[0]
    assert indices(item) == list(range(12))  # 1.png, 2.png, ..., 10.png, 11.png, 12.png
    assert item["fps"] == pytest.approx(7.5) and item["label"] == 1


def test_frame_folder_at_the_root_is_unlabelled_and_labels_can_be_turned_off(frame_tree: Path) -> None:
    ds = quiet(FrameFolder, root=str(frame_tree), frames=4, size=16, random_clip=False)
    labels = {Path(r.path).name: r.label for r in ds.records}
    assert labels == {"v1": 1, "v2": 0, "v3": 0, "v4": -1}
    off = quiet(FrameFolder, root=str(frame_tree), frames=4, size=16, labelled=False)
    assert off.class_names is None and {r.label for r in off.records} == {-1}


def test_a_corrupt_frame_makes_its_video_skipped_at_load_time(frame_tree: Path) -> None:
    ds = quiet(FrameFolder, root=str(frame_tree), frames=8, size=16, random_clip=False)
    v3 = next(i for i, r in enumerate(ds.records) if Path(r.path).name == "v3")
    with pytest.warns(DataWarning, match="f005.jpg"):
        item = ds[v3]
    assert item["video"].shape == (3, 8, 16, 16)
    assert ds.skipped[ds.records[v3].path].startswith("unreadable:")


# ---- ucf101 -----------------------------------------------------------------------------------


def ucf(root: Path, tmp_path: Path, **kw) -> UCF101:
    return quiet(UCF101, root=str(root), frames=4, size=16, index_cache=str(tmp_path / "c"), **kw)


def names_and_labels(ds: UCF101) -> dict[str, int]:
    return {Path(r.path).name: r.label for r in ds.records}


def test_ucf101_labels_follow_class_ind_minus_one(ucf_root: Path, tmp_path: Path) -> None:
    ds = ucf(ucf_root, tmp_path)
    assert ds.class_names == ["YoYo", "ApplyEyeMakeup", "Basketball"]
    assert names_and_labels(ds) == {"v_YoYo_g08_c01.avi": 0, "v_ApplyEyeMakeup_g08_c01.avi": 1,
                                    "v_Basketball_g08_c01.avi": 2}
    assert {ds[i]["label"] for i in range(len(ds))} == {0, 1, 2}
    assert ds[0]["fps"] == pytest.approx(25.0)


def test_ucf101_split_and_fold_pick_the_official_lists(ucf_root: Path, tmp_path: Path) -> None:
    test1 = names_and_labels(ucf(ucf_root, tmp_path, split="test", fold=1))
    train2 = names_and_labels(ucf(ucf_root, tmp_path, split="train", fold=2))
    assert test1 == train2 == {"v_YoYo_g01_c01.avi": 0, "v_ApplyEyeMakeup_g01_c01.avi": 1,
                               "v_Basketball_g01_c01.avi": 2}
    assert len(ucf(ucf_root, tmp_path, split="all", fold=1)) == 6
    with pytest.raises(ValidationError, match="fold"):
        UCF101(root=str(ucf_root), fold=4)


def test_ucf101_counts_a_listed_video_that_is_missing(ucf_root: Path, tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="skipped 1 of 4"):
        ds = UCF101(root=str(ucf_root), fold=3, frames=4, size=16, index_cache=str(tmp_path / "c"))
    assert len(ds) == 3
    (path, reason), = ds.skipped.items()
    assert path.endswith("v_YoYo_g99_c01.avi") and reason == "missing: listed in trainlist03.txt but not found"


def test_ucf101_finds_a_listed_video_whose_name_differs_in_case(ucf_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ucf"
    shutil.copytree(ucf_root, root)
    folder = root / "UCF-101" / "YoYo"
    (folder / "v_YoYo_g08_c01.avi").rename(folder / "v_yoyo_G08_C01.avi")
    ds = ucf(root, tmp_path)
    assert names_and_labels(ds)["v_yoyo_G08_C01.avi"] == 0 and not ds.skipped


def test_ucf101_without_split_files_names_the_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "UCF-101").mkdir()
    with pytest.raises(MissingFileError, match="ucfTrainTestlist"):
        UCF101(root=str(tmp_path))


# ---- sky_timelapse ----------------------------------------------------------------------------


def test_sky_timelapse_reads_clip_folders_of_the_split_unlabelled(sky_root: Path) -> None:
    with pytest.warns(DataWarning, match="skipped 1 of 3"):
        ds = SkyTimelapse(root=str(sky_root), frames=16, size=16, random_clip=False, fps=30.0)
    assert [Path(r.path).name for r in ds.records] == ["vidA_1", "vidB_1"]
    assert [Path(p).name for p in ds.skipped] == ["vidA_2"]  # 5 frames < 16
    item = ds[0]
    assert item["label"] == -1 and ds.class_names is None and ds.num_classes == 0
    assert item["fps"] == pytest.approx(30.0)
    assert indices(item) == list(range(16))
    test = quiet(SkyTimelapse, root=str(sky_root), split="test", frames=16, size=16)
    assert [Path(r.path).name for r in test.records] == ["vidC_1"]
    direct = quiet(SkyTimelapse, root=str(sky_root / "sky_train"), frames=16, size=16)
    assert len(direct) == 2


def test_sky_timelapse_without_the_split_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="sky_test"):
        SkyTimelapse(root=str(tmp_path), split="test")


# ---- registry and batching ---------------------------------------------------------------------


def test_datasets_are_built_through_the_registry(sky_root: Path) -> None:
    ds = quiet(lambda **kw: REGISTRY.create("dataset", "sky_timelapse", **kw),
               root=str(sky_root), frames=8, size=16)
    assert isinstance(ds, SkyTimelapse) and ds.clip_shape == (8, 16, 16)
    with pytest.raises(ComponentError, match="frame_stridee"):
        REGISTRY.create("dataset", "video_folder", root="x", frame_stridee=2)


def test_collate_clips_stacks_video_fps_and_label() -> None:
    items = [{"video": torch.zeros(3, 2, 4, 4), "fps": 8, "label": 1},
             {"video": torch.ones(3, 2, 4, 4), "fps": 12.5, "label": None}]
    batch = collate_clips(items)
    assert batch["video"].shape == (2, 3, 2, 4, 4)
    assert batch["fps"].dtype == torch.float32 and batch["fps"].tolist() == [8.0, 12.5]
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [1, -1]
    scaled = collate_clips([{"video": torch.full((3, 1, 2, 2), 255, dtype=torch.uint8), "fps": 1.0,
                             "label": 0}])
    assert torch.equal(scaled["video"], torch.ones(1, 3, 1, 2, 2))


def test_a_skip_warning_reaches_the_terminal_once(video_tree: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from vqvdm_plugins.datasets import VideoFolder\n"
            f"VideoFolder(root={str(video_tree)!r}, frames=4, size=16, index_cache={str(tmp_path / 'c')!r})\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert shown.count("skipped 2 of 6 videos") == 1, shown

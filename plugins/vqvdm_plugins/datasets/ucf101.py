"""UCF-101 in its official layout, with the official class indices and train/test splits.

::

    root/
      UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi ...   (101 class folders, 13,320 videos)
      ucfTrainTestlist/classInd.txt                           "1 ApplyEyeMakeup" ... "101 YoYo"
      ucfTrainTestlist/trainlist01.txt ... trainlist03.txt    "ApplyEyeMakeup/v_..._g08_c01.avi 1"
      ucfTrainTestlist/testlist01.txt ... testlist03.txt      "ApplyEyeMakeup/v_..._g01_c01.avi"

Labels are classInd's indices minus one (``1 ApplyEyeMakeup`` -> label 0). ``split`` picks the
train or test list of ``fold`` (1-3), or ``all`` for both lists of that fold (all 13,320 videos,
as many video generation papers train on). A listed video whose file is missing is skipped and
counted. A name that does not match exactly is also looked up case-insensitively: the official
names mix cases (``HandstandPushups/v_HandStandPushups_...``) and copies that passed through a
case-insensitive file system may not keep them. An entry that is absolute or climbs out of the
video folder (``/etc/x``, ``../x``) is refused, naming the list and line, before any work. The FPS of each video is
read from its container (mostly 25). Frame counts are probed once and cached (``index_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from vqvdm_core.data.file_dataset import VideoFileConfig, VideoFileDataset
from vqvdm_core.data.scan import absent, find_files, require_dir
from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_core.interfaces.configurable import FilePurpose
from vqvdm_core.io.paths import inside_path

__all__ = ["UCF101", "read_class_index", "read_split_list"]


def read_class_index(path: Path) -> list[str]:
    """Class names in label order from ``classInd.txt`` (``"<1-based index> <name>"`` lines)."""
    if not path.is_file():
        raise MissingFileError(f"UCF-101 class list not found: {path}")
    numbered: dict[int, str] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{path}:{line_no}: expected '<index> <ClassName>', got {line.strip()!r}")
        numbered[int(parts[0])] = parts[1]
    expected = list(range(1, len(numbered) + 1))
    if sorted(numbered) != expected:
        raise UserError(f"{path}: class indices must run 1..{len(numbered)} without gaps")
    return [numbered[i] for i in expected]


def read_split_list(path: Path, classes: list[str]) -> list[tuple[str, int]]:
    """``[(relative video path, 0-based label), ...]`` from a train or test list.

    Train lists give the 1-based label after the path; test lists give only the path, and the
    label comes from its class folder through ``classes``.
    """
    if not path.is_file():
        raise MissingFileError(f"UCF-101 split list not found: {path}")
    by_name = {name.lower(): i for i, name in enumerate(classes)}
    out = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            rel = inside_path(parts[0]).as_posix()
        except ValueError as exc:
            raise UserError(f"{path}:{line_no}: the entry {exc}: entries are paths inside the video folder, "
                            "e.g. 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi'") from None
        if len(parts) >= 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise UserError(f"{path}:{line_no}: label {parts[1]!r} is not in 1..{len(classes)}")
            label = int(parts[1]) - 1
        else:
            folder = rel.split("/")[0].lower()
            if folder not in by_name:
                raise UserError(f"{path}:{line_no}: class folder {rel.split('/')[0]!r} is not in classInd.txt")
            label = by_name[folder]
        out.append((rel, label))
    return out


class UCF101(VideoFileDataset):
    """UCF-101 action videos: official classInd labels and train/test lists, folds 1-3."""

    class Config(VideoFileConfig):
        root: str = Field(..., description="folder holding UCF-101/ and ucfTrainTestlist/")
        split: Literal["train", "test", "all"] = Field("train", description="which list of the fold")
        fold: int = Field(1, ge=1, le=3, description="official split 1, 2 or 3")
        video_dir: str = Field("UCF-101", description="videos folder, relative to root")
        split_dir: str = Field("ucfTrainTestlist", description="split files folder, relative to root")

        @field_validator("video_dir", "split_dir")
        @classmethod
        def _inside_root(cls, folder: str) -> str:
            """Both folders are relative to ``root`` and stay inside it (move ``root`` instead)."""
            try:
                return inside_path(folder).as_posix()
            except ValueError as exc:
                raise ValueError(f"{exc}: it is a folder inside root; to read another tree, set root") from None

    config: Config

    def __init__(self, config: "UCF101.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser() / self.config.video_dir

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        base = Path(config.root).expanduser()
        root_problem = absent(base, "UCF-101 root", directory=True)
        if root_problem:
            return root_problem
        splits = base / config.split_dir
        lists = ["train", "test"] if config.split == "all" else [config.split]
        problems = [*absent(base / config.video_dir, "UCF-101 video folder", directory=True),
                    *absent(splits / "classInd.txt", "UCF-101 class list", directory=False),
                    *(problem for name in lists
                      for problem in absent(splits / f"{name}list{config.fold:02d}.txt", "UCF-101 split list",
                                            directory=False))]
        if not problems:  # the lists are small text files: a bad entry is named before any work
            try:
                classes = read_class_index(splits / "classInd.txt")
                for name in lists:
                    read_split_list(splits / f"{name}list{config.fold:02d}.txt", classes)
            except UserError as exc:
                problems.append(str(exc))
        return problems

    def find_videos(self) -> tuple[list[tuple[Path, int]], list[str] | None]:
        c = self.config
        base = require_dir(Path(c.root).expanduser(), "UCF-101 root")
        videos = require_dir(base / c.video_dir, "UCF-101 video folder")
        splits = require_dir(base / c.split_dir, "UCF-101 split folder (ucfTrainTestlist)")
        classes = read_class_index(splits / "classInd.txt")
        names = ["train", "test"] if c.split == "all" else [c.split]
        listed: list[tuple[str, int, str]] = []
        for name in names:
            list_file = splits / f"{name}list{c.fold:02d}.txt"
            listed += [(rel, label, list_file.name) for rel, label in read_split_list(list_file, classes)]
        found: list[tuple[Path, int]] = []
        by_lower: dict[str, Path] | None = None
        for rel, label, list_name in listed:
            path = videos / rel
            if not path.is_file():
                if by_lower is None:  # built once, only when some name does not match exactly
                    by_lower = {p.relative_to(videos).as_posix().lower(): p
                                for p in find_files(videos, [Path(rel).suffix or ".avi"])}
                path = by_lower.get(rel.lower(), path)
            if path.is_file():
                found.append((path, label))
            else:
                self.skip(path, f"missing: listed in {list_name} but not found")
        return found, classes

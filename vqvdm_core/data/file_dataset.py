"""Base classes for datasets that cut clips from videos on disk.

:class:`FileClipDataset` does everything but finding and decoding the videos:

* at construction, it indexes the videos (a subclass's :meth:`~FileClipDataset.index`), drops
  those that cannot give a clip (unreadable, or shorter than ``(frames - 1) * frame_stride + 1``),
  records each in ``dataset.skipped`` (path -> reason) and warns once with a summary; an empty
  result is a :class:`~vqvdm_core.errors.MissingFileError` naming the root;
* ``dataset[i]`` chooses the clip (random or fixed, see :class:`~vqvdm_core.data.clips.ClipConfig`),
  decodes only its frames, resizes and crops them, and returns ``{"video", "fps", "label"}``;
* a video that fails at that point (corrupt data, a file deleted since indexing) is added to
  ``skipped`` with a warning and another video stands in, so an epoch never stops on one bad file.

Two ready bases: :class:`VideoFileDataset` (files decoded with PyAV; frame counts, FPS and the
frame times of variable-frame-rate files probed once and cached, see
:mod:`~vqvdm_core.data.probe_cache`) and :class:`FrameFolderDataset` (folders of
frame images; the FPS comes from the config, since images carry none).

``skipped`` lives in each process: failures found by DataLoader worker processes at load time
are warned there but not added to the main process's dict.
"""

from __future__ import annotations

import abc
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.data.clips import ClipConfig, choose_start, clip_span, frames_to_clip
from vqvdm_core.data.probe_cache import ProbeCache, ProbeResult
from vqvdm_core.data.scan import absent, read_frame_files
from vqvdm_core.errors import MissingFileError
from vqvdm_core.interfaces import VideoDataset
from vqvdm_core.interfaces.configurable import FilePurpose
from vqvdm_core.io.frame_times import FrameTimes
from vqvdm_core.io.video import VideoReadError, probe_frame_times, probe_video, read_video

__all__ = [
    "DataWarning",
    "VideoRecord",
    "FileClipDataset",
    "VideoFileConfig",
    "VideoFileDataset",
    "FrameFolderConfig",
    "FrameFolderDataset",
]


MAX_ATTEMPTS = 16
"""Videos tried for one item before giving up (each failure is skipped and warned)."""


class DataWarning(UserWarning):
    """A video was skipped (unreadable, too short, missing); the data set continues without it."""


@dataclass
class VideoRecord:
    """One indexed video: where it is, its label, how many frames and at what rate."""

    path: str
    label: int
    num_frames: int
    fps: float
    frame_files: tuple[str, ...] | None = None
    """For a folder of frames: the image files in order."""
    frame_times: FrameTimes | None = None
    """For a variable-frame-rate video file: its frames' times, which seeks go by (None: a constant
    rate, frame ``n`` at ``n / fps``)."""


class FileClipDataset(VideoDataset):
    """Clips from indexed videos; subclasses implement :meth:`index` and :meth:`read_frames`."""

    Config = ClipConfig
    config: ClipConfig

    def __init__(self, config: ClipConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self._skipped: dict[str, str] = {}
        records, self._class_names = self.index()
        span = clip_span(self.config.frames, self.config.frame_stride)
        candidates = len(records) + len(self.skipped)
        self.records: list[VideoRecord] = []
        for record in records:
            if record.num_frames < span:
                self._skipped[record.path] = (
                    f"too short: {record.num_frames} frames, a clip needs {span} "
                    f"({self.config.frames} frames x stride {self.config.frame_stride})")
            else:
                self.records.append(record)
        self._bad: set[int] = set()
        if not self.records:
            raise MissingFileError(self._empty_message(candidates))
        if self.skipped:
            self._warn_summary(candidates)

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The data folder (a Config's ``root``) when it is not a directory."""
        root = getattr(config, "root", None)
        return absent(root, f"{cls.__name__} root", directory=True) if root is not None else []

    @property
    def skipped(self) -> dict[str, str]:
        """Path -> reason of every video left out (at indexing, or found bad while loading)."""
        return self._skipped

    # ---- what a subclass provides ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def root(self) -> Path:
        """The folder the videos were found in (named in messages)."""

    @abc.abstractmethod
    def index(self) -> tuple[list[VideoRecord], list[str] | None]:
        """Every usable-looking video and the class names (None: unlabelled).

        Videos that cannot be used at all are reported with :meth:`skip` instead of returned.
        Class names must not depend on which files turn out unreadable, so indices stay stable.
        """

    @abc.abstractmethod
    def read_frames(self, record: VideoRecord, *, start: int, count: int, stride: int) -> Tensor:
        """``uint8 (T, H, W, 3)`` frames ``start, start + stride, ...`` (fewer if the video ends).

        Raise :class:`~vqvdm_core.io.video.VideoReadError` (or ``MissingFileError``) when the
        video cannot be decoded.
        """

    # ---- the dataset ---------------------------------------------------------------------------

    def skip(self, path: str | Path, reason: str) -> None:
        """Record that ``path`` is left out, and why (``"category: details"``)."""
        self._skipped[str(path)] = reason

    def skip_counts(self) -> dict[str, int]:
        """Number of skipped videos per reason category (``too short``, ``unreadable``, ...)."""
        return dict(Counter(reason.split(":", 1)[0] for reason in self.skipped.values()))

    def summary(self) -> str:
        """One line: usable videos, and the skipped ones by reason."""
        text = f"{len(self.records)} videos from {self.root}"
        if self.skipped:
            counts = ", ".join(f"{n} {why}" for why, n in sorted(self.skip_counts().items()))
            text += f"; {len(self.skipped)} skipped ({counts})"
        return text

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return self.config.clip_shape()

    @classmethod
    def clip_shape_of(cls, config: Any) -> tuple[int, int, int] | None:
        return cls.resolve_config(config, {}).clip_shape()

    @property
    def class_names(self) -> list[str] | None:
        return list(self._class_names) if self._class_names else None

    def __len__(self) -> int:
        return len(self.records) * self.config.clips_per_video

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} clips")
        per_video = self.config.clips_per_video
        stand_ins = self._stand_ins(index)
        item = index
        last_error = ""
        tried = 0
        for _ in range(8 * MAX_ATTEMPTS):  # draws; videos already known bad are passed over
            video = item // per_video
            if video not in self._bad:
                tried += 1
                try:
                    return self._clip(self.records[video], item % per_video)
                except (VideoReadError, MissingFileError) as exc:
                    last_error = str(exc)
                    self._mark_bad(video, exc)
            if tried >= MAX_ATTEMPTS or len(self._bad) == len(self.records):
                break
            item = next(stand_ins)
        raise VideoReadError(
            f"no readable clip for item {index} of {self.root} after trying {tried} videos; "
            f"{len(self._bad)} of {len(self.records)} videos failed to decode (last: {last_error})")

    def _stand_ins(self, index: int) -> Iterator[int]:
        """Items to try instead of a bad one: random, and the same every time when clips are fixed."""
        generator = None
        if not self.config.random_clip:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)
        while True:
            yield int(torch.randint(0, len(self), (1,), generator=generator))

    def _mark_bad(self, video: int, exc: Exception) -> None:
        self._bad.add(video)
        path = self.records[video].path
        kind = "missing" if isinstance(exc, MissingFileError) else "unreadable"
        self.skip(path, f"{kind}: {exc}")
        message = f"skipping {path} ({kind}: {exc}); another video stands in"
        warnings.warn(message, DataWarning, stacklevel=3)

    def _clip(self, record: VideoRecord, clip: int) -> dict[str, Any]:
        c = self.config
        span = clip_span(c.frames, c.frame_stride)
        frames = None
        for _ in range(2):
            start = choose_start(record.num_frames, frames=c.frames, stride=c.frame_stride,
                                 random_clip=c.random_clip, clip=clip,
                                 clips_per_video=c.clips_per_video)
            frames = self.read_frames(record, start=start, count=c.frames, stride=c.frame_stride)
            if frames.shape[0] == c.frames:
                break
            # The file holds fewer frames than its metadata said: keep what is known to exist
            # and choose again once.
            got = frames.shape[0]
            known = start + (got - 1) * c.frame_stride + 1 if got else start
            if known < span:
                raise VideoReadError(f"too short: only {known} frames decode, a clip needs {span}")
            record.num_frames = known
        assert frames is not None
        if frames.shape[0] != c.frames:
            raise VideoReadError(f"{record.path}: decoded {frames.shape[0]} of {c.frames} frames")
        return {"video": frames_to_clip(frames, c.size), "fps": record.fps / c.frame_stride,
                "label": int(record.label)}

    def _empty_message(self, candidates: int) -> str:
        if not candidates:
            return f"no videos found under {self.root}{self._layout_hint()}"
        counts = Counter(reason.split(":", 1)[0] for reason in self.skipped.values())
        detail = ", ".join(f"{n} {why}" for why, n in sorted(counts.items()))
        example = next(iter(self.skipped.items()))
        return (f"no usable videos under {self.root}: all {candidates} were skipped ({detail}); "
                f"e.g. {example[0]}: {example[1]}")

    def _layout_hint(self) -> str:
        """Text appended to the 'no videos found' error (e.g. the expected layout)."""
        return ""

    def _warn_summary(self, candidates: int) -> None:
        examples = "; ".join(f"{p}: {r}" for p, r in list(self.skipped.items())[:3])
        message = (f"{type(self).__name__}: skipped {len(self.skipped)} of {candidates} videos "
                   f"under {self.root} ({', '.join(f'{n} {w}' for w, n in sorted(self.skip_counts().items()))})"
                   f"; e.g. {examples}. The full list is in dataset.skipped.")
        warnings.warn(message, DataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------


class VideoFileConfig(ClipConfig):
    """Clip settings plus where probe results are cached."""

    index_cache: str | None = Field(
        None,
        description="folder of the probe cache (frame count and FPS of each file); "
                    "null: $XDG_CACHE_HOME/vqvdm or ~/.cache/vqvdm",
    )
    cache_index: bool = Field(True, description="false: probe every file at every start, cache nothing")


class VideoFileDataset(FileClipDataset):
    """Clips from video files decoded with PyAV; subclasses implement :meth:`find_videos`."""

    Config = VideoFileConfig
    config: VideoFileConfig

    @abc.abstractmethod
    def find_videos(self) -> tuple[list[tuple[Path, int]], list[str] | None]:
        """``[(file, label), ...]`` and the class names (None: unlabelled)."""

    def index(self) -> tuple[list[VideoRecord], list[str] | None]:
        found, class_names = self.find_videos()
        cache = ProbeCache(self.root, self.config.index_cache) if self.config.cache_index else None
        records = []
        for path, label in found:
            result = cache.get(path) if cache is not None else None
            if result is None:
                result = self._probe(path)
                if cache is not None:
                    cache.put(path, result)
            if isinstance(result, str):
                self.skip(path, result)
            else:
                num_frames, fps, times = result
                records.append(VideoRecord(str(path), label, num_frames, fps, frame_times=times))
        if cache is not None:
            cache.save()
        return records, class_names

    @staticmethod
    def _probe(path: Path) -> ProbeResult:
        """Frame count, FPS and (variable frame rate only) frame times of ``path``, or why it is
        unusable. A variable-frame-rate file's FPS is its rate while it runs (FrameTimes.rate): a
        pause does not lower it, as it lowers the container's average rate."""
        try:
            num_frames, fps = probe_video(path)
            times = probe_frame_times(path)
        except (VideoReadError, MissingFileError) as exc:
            return f"unreadable: {exc}"
        return num_frames, (times.rate if times is not None else None) or fps, times

    def read_frames(self, record: VideoRecord, *, start: int, count: int, stride: int) -> Tensor:
        frames, _ = read_video(record.path, start=start, num_frames=count, stride=stride,
                               frame_times=record.frame_times)
        return frames


# --------------------------------------------------------------------------------------------
# Folders of frames
# --------------------------------------------------------------------------------------------


class FrameFolderConfig(ClipConfig):
    """Clip settings plus the frame rate, which image files do not carry."""

    fps: float = Field(25.0, gt=0, description="frame rate of the source frames")


class FrameFolderDataset(FileClipDataset):
    """Clips from folders of frame images; subclasses implement :meth:`find_frame_folders`."""

    Config = FrameFolderConfig
    config: FrameFolderConfig

    @abc.abstractmethod
    def find_frame_folders(self) -> tuple[list[tuple[Path, list[Path], int]], list[str] | None]:
        """``[(folder, frame files in order, label), ...]`` and the class names (None: unlabelled)."""

    def index(self) -> tuple[list[VideoRecord], list[str] | None]:
        found, class_names = self.find_frame_folders()
        records = [VideoRecord(str(folder), label, len(files), float(self.config.fps),
                               tuple(str(f) for f in files))
                   for folder, files, label in found]
        return records, class_names

    def read_frames(self, record: VideoRecord, *, start: int, count: int, stride: int) -> Tensor:
        assert record.frame_files is not None
        return read_frame_files(record.frame_files, start=start, count=count, stride=stride)


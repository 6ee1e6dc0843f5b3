"""Shared data machinery: clip settings and arithmetic, file-backed dataset bases, batching.

Dataset plug-ins (ours in ``vqvdm_plugins.datasets`` and third parties') build on these:

* :mod:`~vqvdm_core.data.clips`: :class:`ClipConfig` (frames, size, stride, random or fixed
  clips, seed), choosing a clip's start frame, resize + centre crop, ``uint8`` -> [-1, 1];
* :mod:`~vqvdm_core.data.file_dataset`: :class:`VideoFileDataset` / :class:`FrameFolderDataset`,
  which index a tree, skip (and count) bad or short videos and never stop an epoch on one;
* :mod:`~vqvdm_core.data.scan`: sorted walks for video files and frame folders;
* :mod:`~vqvdm_core.data.probe_cache`: the JSON cache of frame counts and FPS;
* :mod:`~vqvdm_core.data.collate`: :func:`collate_clips`.
"""

from vqvdm_core.data.clips import (
    ClipConfig,
    choose_start,
    clip_span,
    frames_to_clip,
    resize_center_crop,
    uint8_to_unit_range,
)
from vqvdm_core.data.collate import collate_clips
from vqvdm_core.data.file_dataset import (
    DataWarning,
    FileClipDataset,
    FrameFolderConfig,
    FrameFolderDataset,
    VideoFileConfig,
    VideoFileDataset,
    VideoRecord,
)

__all__ = [
    "ClipConfig",
    "choose_start",
    "clip_span",
    "frames_to_clip",
    "resize_center_crop",
    "uint8_to_unit_range",
    "DataWarning",
    "FileClipDataset",
    "FrameFolderConfig",
    "FrameFolderDataset",
    "VideoFileConfig",
    "VideoFileDataset",
    "VideoRecord",
    "collate_clips",
]

"""Any tree of video files; the class of a video is the name of the folder it sits in.

::

    root/
      dog/clip1.mp4, clip2.avi        -> class "dog"
      cat/indoor/clip3.mkv            -> class "indoor"  (the *parent* folder's name)
      loose.mp4                       -> unlabelled (-1): it sits directly in root

Class indices follow the sorted class names, so they are stable across runs and machines. The
FPS of each video is read from its container. Frame counts are probed once and cached (see
``index_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from vqvdm_core.data.file_dataset import VideoFileConfig, VideoFileDataset
from vqvdm_core.data.scan import VIDEO_EXTENSIONS, find_files, require_dir
from vqvdm_core.interfaces import NO_LABEL

__all__ = ["VideoFolder"]


class VideoFolder(VideoFileDataset):
    """Video files under a folder; class = parent folder name, FPS from each container."""

    class Config(VideoFileConfig):
        root: str = Field(..., description="folder searched recursively for video files")
        extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS),
                                      description="file suffixes taken as videos (case-insensitive)")
        labelled: bool = Field(True, description="false: every clip is unlabelled (-1)")

    config: Config

    def __init__(self, config: "VideoFolder.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser()

    def find_videos(self) -> tuple[list[tuple[Path, int]], list[str] | None]:
        root = require_dir(self.root, "video folder")
        files = find_files(root, self.config.extensions)
        if not self.config.labelled:
            return [(f, NO_LABEL) for f in files], None
        names = sorted({f.parent.name for f in files if f.parent != root})
        index = {name: i for i, name in enumerate(names)}
        labelled = [(f, index[f.parent.name] if f.parent != root else NO_LABEL) for f in files]
        return labelled, names or None

    def _layout_hint(self) -> str:
        return f" (looked for {', '.join(self.config.extensions)})"

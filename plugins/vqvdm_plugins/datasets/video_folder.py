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

from pydantic import Field

from vqvdm_core.data.file_dataset import VideoFileConfig, VideoFileDataset
from vqvdm_core.data.scan import VIDEO_EXTENSIONS, find_files, label_by_folder, require_dir

__all__ = ["VideoFolder"]


class VideoFolder(VideoFileDataset):
    """Video files under a folder; class = parent folder name, FPS from each container."""

    class Config(VideoFileConfig):
        root: str = Field(..., description="folder searched recursively for video files")
        extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS),
                                      description="file suffixes taken as videos (case-insensitive)")
        labelled: bool = Field(True, description="false: every clip is unlabelled (-1)")

    config: Config

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser()

    def find_videos(self) -> tuple[list[tuple[Path, int]], list[str] | None]:
        root = require_dir(self.root, "video folder")
        files = find_files(root, self.config.extensions)
        labels, names = label_by_folder(files, root, labelled=self.config.labelled)
        return list(zip(files, labels, strict=True)), names

    def _layout_hint(self) -> str:
        return f" (looked for {', '.join(self.config.extensions)})"

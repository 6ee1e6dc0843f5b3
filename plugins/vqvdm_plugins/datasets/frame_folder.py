"""Folders of frame images, one folder per video; the class is the folder above it.

::

    root/
      dog/video1/0001.jpg 0002.jpg ...   -> one video of class "dog"
      dog/video2/...
      cat/video3/...
      video4/0001.png ...                -> unlabelled (-1): its folder sits directly in root

Every folder holding images is one video, its frames sorted by name with numbers compared as
numbers (``2.jpg`` before ``10.jpg``). Images carry no timing, so the FPS is the config's ``fps``.
``labelled: false`` makes every clip unlabelled.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from vqvdm_core.data.file_dataset import FrameFolderConfig, FrameFolderDataset
from vqvdm_core.data.scan import IMAGE_EXTENSIONS, find_frame_folders, label_by_folder, require_dir

__all__ = ["FrameFolder"]


class FrameFolder(FrameFolderDataset):
    """Folders of frame images (one per video); class = the folder above, FPS from config."""

    class Config(FrameFolderConfig):
        root: str = Field(..., description="folder searched recursively for folders of frames")
        extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS),
                                      description="file suffixes taken as frames (case-insensitive)")
        labelled: bool = Field(True, description="false: every clip is unlabelled (-1)")

    config: Config

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser()

    def find_frame_folders(self) -> tuple[list[tuple[Path, list[Path], int]], list[str] | None]:
        root = require_dir(self.root, "frame folder root")
        folders = find_frame_folders(root, self.config.extensions)
        labels, names = label_by_folder([folder for folder, _ in folders], root, labelled=self.config.labelled)
        return [(folder, frames, label) for (folder, frames), label in zip(folders, labels, strict=True)], names

    def _layout_hint(self) -> str:
        return (f" (expected folders of {', '.join(self.config.extensions)} images, "
                "e.g. root/<class>/<video>/0001.jpg)")

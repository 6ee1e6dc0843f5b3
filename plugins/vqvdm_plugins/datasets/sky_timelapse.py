"""Sky Time-lapse (Xiong et al. 2018) as distributed: folders of JPEG frames, no labels.

::

    root/
      sky_train/<video id>/<clip id>/<video id>_<n>_frames_00000001.jpg ...
      sky_test/<video id>/<clip id>/...

Each folder holding frames is one video (a clip folder of the layout above; a video folder that
holds its frames directly counts too). Frames carry no timing, so the FPS is the config's ``fps``.
Many clips are shorter than 16 frames: they are skipped and counted in ``dataset.skipped``.
``root`` may also point at the ``sky_train`` / ``sky_test`` folder itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vqvdm_core.data.file_dataset import FrameFolderConfig, FrameFolderDataset
from vqvdm_core.data.scan import IMAGE_EXTENSIONS, absent, find_frame_folders, require_dir
from vqvdm_core.interfaces import NO_LABEL
from vqvdm_core.interfaces.configurable import FilePurpose

__all__ = ["SkyTimelapse"]


class SkyTimelapse(FrameFolderDataset):
    """Sky Time-lapse clips from sky_train/ or sky_test/ folders of JPEG frames; unlabelled."""

    class Config(FrameFolderConfig):
        root: str = Field(..., description="folder holding sky_train/ and sky_test/")
        split: Literal["train", "test"] = Field("train", description="sky_train or sky_test")

    config: Config

    def __init__(self, config: "SkyTimelapse.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)

    @property
    def root(self) -> Path:
        return self._split_dir(self.config)

    @staticmethod
    def _split_dir(config: "SkyTimelapse.Config") -> Path:
        base = Path(config.root).expanduser()
        folder = f"sky_{config.split}"
        return base if base.name == folder else base / folder

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        return (absent(config.root, "Sky Time-lapse root", directory=True)
                or absent(cls._split_dir(config), f"Sky Time-lapse {config.split} folder", directory=True))

    def find_frame_folders(self) -> tuple[list[tuple[Path, list[Path], int]], list[str] | None]:
        require_dir(Path(self.config.root).expanduser(), "Sky Time-lapse root")
        split_dir = require_dir(self.root, f"Sky Time-lapse {self.config.split} folder")
        folders = find_frame_folders(split_dir, IMAGE_EXTENSIONS)
        return [(folder, frames, NO_LABEL) for folder, frames in folders], None

    def _layout_hint(self) -> str:
        return " (expected sky_<split>/<video>/<clip>/*.jpg)"

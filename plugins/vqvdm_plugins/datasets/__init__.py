"""Dataset plug-ins: ``synthetic_motion`` (built in), ``video_folder``, ``frame_folder``,
``ucf101`` and ``sky_timelapse``.

The file-backed ones build on :mod:`vqvdm_core.data` (clip choice, resize/crop, skipping bad
videos); a third-party data set does the same. See ``docs/data.md`` for layouts and preparation.
"""

from vqvdm_plugins.datasets.frame_folder import FrameFolder
from vqvdm_plugins.datasets.sky_timelapse import SkyTimelapse
from vqvdm_plugins.datasets.synthetic_motion import SyntheticMotion
from vqvdm_plugins.datasets.ucf101 import UCF101
from vqvdm_plugins.datasets.video_folder import VideoFolder

__all__ = ["FrameFolder", "SkyTimelapse", "SyntheticMotion", "UCF101", "VideoFolder"]

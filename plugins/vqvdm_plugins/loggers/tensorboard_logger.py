"""TensorBoard event files (``pip install 'vqvdm[tensorboard]'``).

Scalars are tagged ``<stage>/<name>`` (``tokenizer/loss/generator``) at the stage's step. Videos are
written as animated GIF image summaries (what ``SummaryWriter.add_video`` writes, without needing
moviepy): TensorBoard's Images tab plays them. The resolved recipe is the run's hyper-parameters
(HParams tab, flattened to dotted names) and, readable whole, the text ``recipe``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import ExperimentLogger, RunInfo
from vqvdm_core.interfaces.configurable import ComponentConfig, FilePurpose
from vqvdm_plugins.loggers.requirements import missing_message, missing_package

__all__ = ["TensorBoardLogger"]


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"train.denoiser.steps": 1000, ...}``: numbers, booleans and strings as they
    are, lists and nulls as their JSON text (what the HParams plugin accepts)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_hparams(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def gif_bytes(path: Path, fps: float) -> tuple[bytes, int, int]:
    """``(GIF data, height, width)`` of a video file: a GIF as it is, anything else re-encoded."""
    from PIL import Image

    if path.suffix.lower() == ".gif":
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            return data, image.height, image.width
    from vqvdm_core.io.video import read_video

    frames, _ = read_video(path)
    images = [Image.fromarray(frame) for frame in frames.numpy()]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(10, round(1000.0 / fps)))
    return buffer.getvalue(), images[0].height, images[0].width


class TensorBoardLogger(ExperimentLogger):
    """TensorBoard event files: scalars per stage, videos as animated GIFs, the recipe as hparams."""

    class Config(ComponentConfig):
        dir: str = Field("tensorboard", description="folder of the event files (`tensorboard --logdir` "
                         "it); a relative path is under the run directory")
        videos: bool = Field(True, description="log validation and sample videos (animated GIFs)")
        flush_secs: int = Field(30, ge=1, description="seconds between writes of pending events to disk")

    def __init__(self, config: "TensorBoardLogger.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.log_dir: Path | None = None
        self._writer: Any = None

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The tensorboard package, when it is not installed (a run with this logger refuses to start)."""
        return missing_package("tensorboard", logger="tensorboard", extra="tensorboard")

    def open(self, run: RunInfo) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as exc:
            raise ComponentError(f"{missing_message('tensorboard', logger='tensorboard', extra='tensorboard')} "
                                 f"({exc})") from exc
        folder = Path(self.config.dir).expanduser()
        self.log_dir = folder if folder.is_absolute() else run.directory / folder
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=self.config.flush_secs)
        self._writer.add_text("recipe", "    " + yaml.safe_dump(run.config, sort_keys=False)
                              .replace("\n", "\n    "))  # indented: shown as code
        for summary in hparams(flat_hparams(run.config), {}):
            self._writer._get_file_writer().add_summary(summary)

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        for name, value in values.items():
            self._writer.add_scalar(f"{stage}/{name}", value, global_step=step)

    def log_video(self, name: str, path: Path, *, step: int, stage: str, fps: float) -> None:
        if not self.config.videos:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        data, height, width = gif_bytes(path, fps)
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
        summary = Summary(value=[Summary.Value(tag=f"{stage}/{name}", image=image)])
        self._writer._get_file_writer().add_summary(summary, step)

    def close(self, *, failed: bool = False) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

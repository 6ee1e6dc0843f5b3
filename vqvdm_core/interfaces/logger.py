"""The experiment logger interface: a sink for what a run measures, and the :class:`RunInfo` it records."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["ExperimentLogger", "RunInfo"]


@dataclass(frozen=True)
class RunInfo:
    """The run an :class:`ExperimentLogger` records: its name, its directory and its settings."""

    name: str
    """The recipe's run name."""
    directory: Path
    """The run directory (``runs/<name>/``); a logger that writes files puts them under it by default."""
    config: dict[str, Any]
    """The resolved recipe (every default filled, JSON-safe): the run's config / hyper-parameters."""


class ExperimentLogger(Configurable, abc.ABC):
    """A sink for what a run measures: an experiment tracker (TensorBoard, W&B, MLflow) or a file.

    Every scalar a stage records (each ``metrics.jsonl`` record of the training stages, the
    evaluate stage's metrics) reaches :meth:`log_scalars`, tagged with the stage it comes from;
    validation and sample videos reach :meth:`log_video`. Only the main process (rank 0) logs.
    :meth:`open` is called once before the first value and :meth:`close` once at the end of the
    command, also when it fails.
    """

    kind: ClassVar[str] = "logger"

    @abc.abstractmethod
    def open(self, run: RunInfo) -> None:
        """Start recording ``run``; record ``run.config`` as the run's config (hyper-parameters).

        Import an optional dependency here (or at module level) and raise an error naming the
        package to install when it is missing."""

    @abc.abstractmethod
    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        """Record ``values`` (``{"loss/generator": 0.12, "val/mse": 0.03}``) at ``step`` of ``stage``
        (``tokenizer``, ``denoiser``, ``evaluate``...). Steps count from each stage's start."""

    def log_video(self, name: str, path: Path, *, step: int, stage: str, fps: float) -> None:
        """Record the video file ``path`` (``.gif`` or ``.mp4``) as ``name`` at ``step`` of ``stage``.
        The default ignores it (a sink without videos)."""
        return None

    def close(self, *, failed: bool = False) -> None:
        """Flush and release everything; ``failed`` when the command stopped on an error."""
        return None

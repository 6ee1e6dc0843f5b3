"""Weights & Biases (``pip install 'vqvdm[wandb]'``); offline with ``WANDB_MODE=offline`` or ``mode: offline``.

Each command that logs (``vqvdm run``, ``vqvdm evaluate``) is one W&B run, grouped by the recipe's run
name. Every stage has its own step axis: a value ``loss/generator`` of stage ``tokenizer`` is logged as
``tokenizer/loss/generator`` against ``tokenizer/step`` (W&B's own step only counts calls), so the
denoiser's step 10 can follow the tokenizer's step 1000. Videos are logged as ``wandb.Video`` of
the written file; the resolved recipe is the run's config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import ExperimentLogger, RunInfo
from vqvdm_core.interfaces.configurable import ComponentConfig, FilePurpose
from vqvdm_plugins.loggers.requirements import missing_message, missing_package

__all__ = ["WandbLogger"]


class WandbLogger(ExperimentLogger):
    """Weights & Biases: one W&B run per command, a step axis per stage, the recipe as config."""

    class Config(ComponentConfig):
        project: str = Field("vqvdm", description="W&B project")
        entity: str | None = Field(None, description="W&B team or user; null: your default entity")
        name: str | None = Field(None, description="display name of the W&B run; null: the recipe's run name")
        group: str | None = Field(None, description="W&B group; null: the recipe's run name (so the commands "
                                  "of one run are grouped)")
        tags: list[str] = Field(default_factory=list, description="W&B tags")
        mode: Literal["online", "offline", "disabled"] | None = Field(
            None, description="null: $WANDB_MODE, else online; offline writes the run under `dir` for a later "
            "`wandb sync`")
        dir: str | None = Field(None, description="folder W&B writes its `wandb/` folder into; null: $WANDB_DIR, "
                                "else the run directory; a relative path is under the run directory")
        videos: bool = Field(True, description="log validation and sample videos")

    def __init__(self, config: "WandbLogger.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.run: Any = None
        self._stages: set[str] = set()

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The wandb package, when it is not installed (a run with this logger refuses to start)."""
        return missing_package("wandb", logger="wandb", extra="wandb")

    def open(self, run: RunInfo) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ComponentError(f"{missing_message('wandb', logger='wandb', extra='wandb')} ({exc})") from exc
        c = self.config
        folder: Path | None = None
        if c.dir is not None:
            folder = Path(c.dir).expanduser()
            folder = folder if folder.is_absolute() else run.directory / folder
        elif not os.environ.get("WANDB_DIR"):
            folder = run.directory
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=c.project, entity=c.entity, name=c.name or run.name,
                              group=c.group or run.name, tags=c.tags or None, mode=c.mode,
                              dir=str(folder) if folder is not None else None, config=run.config)

    def _axis(self, stage: str) -> str:
        """The step metric of ``stage``, declared on first use."""
        axis = f"{stage}/step"
        if stage not in self._stages:
            self.run.define_metric(axis)
            self.run.define_metric(f"{stage}/*", step_metric=axis)
            self._stages.add(stage)
        return axis

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        row: dict[str, Any] = {f"{stage}/{name}": value for name, value in values.items()}
        row[self._axis(stage)] = step
        self.run.log(row)

    def log_video(self, name: str, path: Path, *, step: int, stage: str, fps: float) -> None:
        if not self.config.videos:
            return
        import wandb

        video = wandb.Video(str(path), format=path.suffix.lstrip(".").lower())
        self.run.log({f"{stage}/{name}": video, self._axis(stage): step})

    def close(self, *, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None

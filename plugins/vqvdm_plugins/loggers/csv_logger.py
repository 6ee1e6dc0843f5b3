"""A CSV file of every scalar a run logs: one row per value, no dependency."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from vqvdm_core.interfaces import ExperimentLogger, RunInfo
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["CSVLogger"]

COLUMNS = ("stage", "step", "name", "value")


class CSVLogger(ExperimentLogger):
    """CSV file of every logged scalar: one row (stage, step, name, value) per value."""

    class Config(ComponentConfig):
        file: str = Field("scalars.csv", description="the file rows are appended to; a relative path is "
                          "under the run directory")

    def __init__(self, config: "CSVLogger.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.path: Path | None = None
        self._handle: IO[str] | None = None
        self._rows: Any = None

    def open(self, run: RunInfo) -> None:
        path = Path(self.config.file).expanduser()
        self.path = path if path.is_absolute() else run.directory / path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", newline="", encoding="utf-8")
        self._rows = csv.writer(self._handle)
        if new:
            self._rows.writerow(COLUMNS)
            self._handle.flush()

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        assert self._handle is not None, "CSVLogger.log_scalars before open"
        self._rows.writerows((stage, step, name, repr(float(value))) for name, value in values.items())
        self._handle.flush()  # a killed run keeps every row written so far

    def close(self, *, failed: bool = False) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

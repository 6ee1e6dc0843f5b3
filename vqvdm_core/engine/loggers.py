"""The experiment loggers of one command (a recipe's ``loggers:``), addressed as one.

A recipe names its sinks as component nodes of kind ``logger`` (entry-point group
``vqvdm.loggers``)::

    loggers: [csv, {name: my_tracker, project: video}]

:class:`LoggerSet` builds them, opens them on the first value (so a command that logs nothing,
such as ``vqvdm sample``, starts no tracker run), fans every value out to each, and closes them at
the end of the command, also when it fails. It is empty on every process but the main one, so only
rank 0 logs. A sink that raises while logging is reported once with a ``RuntimeWarning`` and
dropped for the rest of the command: a tracker's hiccup does not stop a training. A sink that
cannot open is an error (its settings are wrong).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from torch import Tensor

from vqvdm_core.errors import ComponentError, UserError, brief
from vqvdm_core.interfaces import ExperimentLogger, RunInfo

if TYPE_CHECKING:
    from vqvdm_core.recipe import Recipe

__all__ = ["LoggerSet", "record_scalars"]


def record_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of one ``metrics.jsonl`` record, named as the sinks receive them.

    Every number but ``step`` (which becomes the step) is kept; a validation record's names get a
    ``val/`` prefix unless they have one (``{"tag": "val", "time": 3.1, "val/mse": 0.2}`` ->
    ``{"val/time": 3.1, "val/mse": 0.2}``), so they never collide with the training record's.
    """
    validation = record.get("tag") == "val"
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("tag", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = f"val/{key}" if validation and not key.startswith("val/") else key
        out[name] = float(value)
    return out


class LoggerSet:
    """Several :class:`~vqvdm_core.interfaces.ExperimentLogger` sinks behind one call.

    Use as a context manager (or call :meth:`close`): every opened sink is closed on exit, told
    whether the command failed.
    """

    def __init__(self, loggers: Sequence[ExperimentLogger] = (), *, run: RunInfo | None = None,
                 names: Sequence[str] | None = None):
        if loggers and run is None:
            raise ValueError("LoggerSet: loggers need the RunInfo they record")
        self._loggers = list(loggers)
        self._names = list(names) if names is not None else [type(s).__name__ for s in self._loggers]
        self._run = run
        self._live: list[int] = []  # indices of the opened sinks still receiving values
        self._opened = False
        self._closed = False

    @classmethod
    def from_recipe(cls, recipe: "Recipe", *, directory: Path, enabled: bool = True) -> "LoggerSet":
        """The sinks of ``recipe.loggers`` for the run in ``directory`` (none where not ``enabled``:
        on processes other than rank 0)."""
        if not enabled or not recipe.loggers:
            return cls()
        sinks = [spec.build("logger") for spec in recipe.loggers]
        run = RunInfo(name=recipe.name, directory=Path(directory), config=recipe.dump())
        return cls(sinks, run=run, names=[spec.name for spec in recipe.loggers])

    def __len__(self) -> int:
        return len(self._loggers)

    @property
    def loggers(self) -> list[ExperimentLogger]:
        """The sinks, in recipe order."""
        return list(self._loggers)

    # -- lifetime ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open every sink (once; later calls do nothing). A sink that cannot open closes the ones
        opened before it and raises a :class:`~vqvdm_core.errors.UserError` naming it."""
        if self._opened or self._closed or not self._loggers:
            return
        assert self._run is not None
        self._opened = True
        for i, sink in enumerate(self._loggers):
            try:
                sink.open(self._run)
            except Exception as exc:
                self.close(failed=True)
                if isinstance(exc, UserError):
                    raise
                raise ComponentError(f"logger '{self._names[i]}' could not start: "
                                     f"{type(exc).__name__}: {brief(exc, lines=2)}") from exc
            self._live.append(i)

    def close(self, *, failed: bool = False) -> None:
        """Close every opened sink (errors are warned about, not raised); later values are ignored."""
        if self._closed:
            return
        self._closed = True
        for i in self._live:
            try:
                self._loggers[i].close(failed=failed)
            except Exception as exc:
                warnings.warn(f"logger '{self._names[i]}' failed to close: {type(exc).__name__}: "
                              f"{brief(exc)}", RuntimeWarning, stacklevel=2)
        self._live = []

    def __enter__(self) -> "LoggerSet":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc is not None)

    # -- values -----------------------------------------------------------------------------

    def log_scalars(self, values: Mapping[str, float], *, step: int, stage: str) -> None:
        """Give ``values`` (numbers only; others are left out) at ``step`` of ``stage`` to every sink."""
        numbers = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not numbers or not self._loggers or self._closed:
            return
        self.open()
        for i in list(self._live):
            self._call(i, "log_scalars", numbers, step=int(step), stage=stage)

    def log_record(self, record: Mapping[str, Any], *, stage: str) -> None:
        """Give the scalars of one ``metrics.jsonl`` record (:func:`record_scalars`) to every sink."""
        self.log_scalars(record_scalars(record), step=int(record.get("step", 0)), stage=stage)

    def log_video(self, name: str, video: Path | Tensor, *, step: int, stage: str, fps: float) -> None:
        """Give a video to every sink: a file (``.gif``, ``.mp4``) or a clip ``(3, T, H, W)`` in
        [-1, 1], written to a temporary GIF first."""
        if not self._loggers or self._closed:
            return
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"log_video: fps must be a positive number, got {fps}")
        self.open()
        if isinstance(video, Tensor):
            from vqvdm_core.io.video import write_video

            with tempfile.TemporaryDirectory(prefix="vqvdm-video-") as folder:
                path = write_video(video, Path(folder) / f"{name.replace('/', '_')}.gif", fps)
                self.log_video(name, path, step=step, stage=stage, fps=fps)
            return
        for i in list(self._live):
            self._call(i, "log_video", name, Path(video), step=int(step), stage=stage, fps=float(fps))

    def _call(self, i: int, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self._loggers[i], method)(*args, **kwargs)
        except Exception as exc:
            self._live.remove(i)
            warnings.warn(f"logger '{self._names[i]}' failed in {method} and receives nothing more in this "
                          f"command: {type(exc).__name__}: {brief(exc)}", RuntimeWarning, stacklevel=3)
            try:
                self._loggers[i].close(failed=True)
            except Exception:
                pass  # already reported as failed

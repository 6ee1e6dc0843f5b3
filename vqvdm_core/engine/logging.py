"""What a training run tells the world: ``metrics.jsonl`` and progress on the console.

``metrics.jsonl`` holds one JSON object per line:

* ``{"tag": "train", "step", "time", "epoch", "it_per_s", "lr/<group>", "loss/<group>", <logs>...}``
  every ``log_every`` optimizer steps; losses and logs are means over the steps since the
  previous record (over micro-batches, and for losses over processes);
* ``{"tag": "val", "step", "time", <validation results>...}`` after each validation.

``time`` is seconds since the stage first started (resumes continue the clock). Each record also
goes to the run's experiment loggers (:class:`~vqvdm_core.engine.loggers.LoggerSet`), tagged with the stage.

Progress is a rich bar (step, loss, it/s, ETA) when the console is a terminal, and plain lines
such as ``tokenizer step 100/1000 loss 0.1230 2.10 it/s eta 7m05s`` otherwise: one every
``log_every`` steps, and one at the next step whenever ``VQVDM_PROGRESS_SECONDS`` (30) seconds
passed without a line.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vqvdm_core.runtime.progress import LineTimer

if TYPE_CHECKING:
    from vqvdm_core.engine.loggers import LoggerSet

__all__ = ["MetricsLog", "TrainProgress", "format_duration", "format_losses"]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    return value


class MetricsLog:
    """Append-only ``metrics.jsonl`` (written on rank 0 only; other ranks pass ``enabled=False``).

    Every record written also goes to ``loggers`` (if any), tagged with ``stage``.
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, loggers: "LoggerSet | None" = None,
                 stage: str = "train"):
        self.path = Path(path)
        self.enabled = enabled
        self.loggers = loggers
        self.stage = stage

    def read(self) -> list[dict[str, Any]]:
        """Every record in the file (an empty list when there is none)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a kill: everything after it is unreliable
        return records

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drop records past ``step`` (logged after the checkpoint a run resumes from); return the rest."""
        kept = [r for r in self.read() if int(r.get("step", 0)) <= step]
        if self.enabled:
            from vqvdm_core.io.atomic import atomic_write

            text = "".join(json.dumps(r) + "\n" for r in kept)
            if self.path.is_file() or kept:
                atomic_write(self.path, lambda handle: handle.write(text.encode()))
        return kept

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and flush, so a kill loses at most the line being written)."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")
        if self.loggers is not None:
            self.loggers.log_record(record, stage=self.stage)


def format_duration(seconds: float) -> str:
    """``42s``, ``7m05s``, ``1h05m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_losses(losses: dict[str, float]) -> str:
    """``loss 0.1230`` for one group; ``loss generator 0.1230 discriminator 0.4560`` for several."""
    if not losses:
        return "loss -"
    if len(losses) == 1:
        return f"loss {next(iter(losses.values())):.4g}"
    return "loss " + " ".join(f"{k} {v:.4g}" for k, v in losses.items())


class _SpeedColumn(ProgressColumn):
    """Optimizer steps per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s")


class TrainProgress:
    """Progress of one training stage, shown only where ``enabled`` (rank 0).

    Use as a context manager; call :meth:`update` after logged steps, :meth:`advance` after every
    step and :meth:`tick` after the steps that are not logged. Without a terminal, :meth:`tick`
    prints a plain line when ``interval`` seconds (default
    :func:`~vqvdm_core.runtime.progress.line_interval`, 30) of ``clock`` passed since the last line.
    """

    def __init__(self, console: Console, *, description: str, total: int, start: int,
                 enabled: bool = True, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.description = description
        self.total = total
        self.start_step = start
        self.enabled = enabled
        self.rich = enabled and console.is_terminal
        self.clock = clock
        self._t0 = clock()
        self._timer = LineTimer(interval, clock=clock)
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "TrainProgress":
        if self.rich:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"), _SpeedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total,
                                            completed=self.start_step, loss="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def rate(self, step: int) -> float:
        """Steps per second since this session started."""
        elapsed = self.clock() - self._t0
        done = step - self.start_step
        return done / elapsed if elapsed > 0 and done > 0 else 0.0

    def advance(self, step: int) -> None:
        """Move the bar to ``step``."""
        if self._bar is not None:
            self._bar.update(self._task, completed=step)

    def update(self, step: int, losses: dict[str, float]) -> None:
        """Show the losses of a logged step: in the bar, or as one plain line."""
        if not self.enabled:
            return
        text = format_losses(losses)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=text)
            return
        self._line(step, text)

    def tick(self, step: int, losses: Callable[[], dict[str, float]]) -> None:
        """After a step that is not logged: without a terminal, a plain line if one is due, showing
        ``losses()`` (the means since the last record)."""
        if self.enabled and self._bar is None and self._timer.due():
            self._line(step, format_losses(losses()))

    def _line(self, step: int, text: str) -> None:
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        self.console.print(f"{self.description} step {step}/{self.total} {text} {rate:.2f} it/s "
                           f"eta {format_duration(eta)}", highlight=False, soft_wrap=True)
        self._timer.mark()

    def message(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)
            self._timer.mark()

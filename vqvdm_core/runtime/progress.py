"""Progress for long loops: a rich bar on a terminal, plain log lines otherwise.

Where the output is not a terminal (CI, ``nohup``, a cluster's log file) a loop prints a plain line
at its checkpoints and also whenever :func:`line_interval` seconds (30; ``VQVDM_PROGRESS_SECONDS``)
passed without one, so a log never stays silent for long while the loop advances.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


INTERVAL_ENV = "VQVDM_PROGRESS_SECONDS"
"""Environment variable: the most seconds between two plain progress lines."""

DEFAULT_INTERVAL = 30.0


def line_interval() -> float:
    """Seconds after which a plain progress line is due: ``$VQVDM_PROGRESS_SECONDS`` or 30 (a value
    that is not a positive number is ignored)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value > 0 else DEFAULT_INTERVAL


class LineTimer:
    """Whether a plain progress line is due: ``interval`` seconds (default :func:`line_interval`)
    passed on ``clock`` since the last :meth:`mark` (or since it was made)."""

    def __init__(self, interval: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.interval = line_interval() if interval is None else float(interval)
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        return self.clock() - self.last >= self.interval

    def mark(self) -> None:
        """A line was just printed."""
        self.last = self.clock()


@contextmanager
def progress(console: Console, total: int, description: str, *, lines: int = 10,
             interval: float | None = None,
             clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. On a terminal a rich bar; otherwise about ``lines`` plain lines, plus
    one whenever ``interval`` seconds (default :func:`line_interval`) passed without a line."""
    if console.is_terminal:
        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)
        return
    done = 0
    start = clock()
    timer = LineTimer(interval, clock=clock)
    every = max(1, total // max(1, lines))

    def advance(n: int = 1) -> None:
        nonlocal done
        before = done
        done += n
        if done // every != before // every or done >= total or timer.due():
            elapsed = clock() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            console.print(f"{description}: {done}/{total} ({rate:.2f}/s, eta {eta:.0f}s)",
                          highlight=False)
            timer.mark()

    yield advance

"""Progress for long loops: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

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


@contextmanager
def progress(console: Console, total: int, description: str,
             *, lines: int = 10) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. On a terminal a rich bar; otherwise about ``lines`` plain lines."""
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
    start = time.perf_counter()
    every = max(1, total // max(1, lines))

    def advance(n: int = 1) -> None:
        nonlocal done
        before = done
        done += n
        if done // every != before // every or done >= total:
            elapsed = time.perf_counter() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            console.print(f"{description}: {done}/{total} ({rate:.2f}/s, eta {eta:.0f}s)",
                          highlight=False)

    yield advance

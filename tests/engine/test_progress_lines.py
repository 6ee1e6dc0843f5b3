"""Without a terminal, every long loop prints a plain line at least every VQVDM_PROGRESS_SECONDS
(30 s) while it advances, besides its usual lines (every log_every steps, every tenth of a loop)."""

from __future__ import annotations

import io
import re

import pytest
from engine_toys import ToyPairs, make_gan, make_trainer, settings
from rich.console import Console

from vqvdm_core.engine.logging import TrainProgress
from vqvdm_core.runtime.progress import DEFAULT_INTERVAL, INTERVAL_ENV, line_interval, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def train_lines(description: str, *, total: int, seconds_per_step: float, log_every: int,
                logged: dict[str, float], running: dict[str, float]) -> list[str]:
    """The plain lines of a training of ``total`` steps on a fake clock, updated as the trainer does:
    ``logged`` losses every ``log_every`` steps and at the last, ``running`` ones at the other steps."""
    console, buffer = plain_console()
    clock = FakeClock()
    with TrainProgress(console, description=description, total=total, start=0, clock=clock) as bar:
        for step in range(1, total + 1):
            clock.now += seconds_per_step
            bar.advance(step)
            if step % log_every == 0 or step == total:
                bar.update(step, logged)
            else:
                bar.tick(step, lambda: running)
    return buffer.getvalue().strip().splitlines()


def test_training_prints_a_line_when_30_seconds_pass_between_logged_steps():
    # a 7 s step: 30 s pass every 5th step, long before log_every (48) does
    lines = train_lines("denoiser", total=100, seconds_per_step=7.0, log_every=48, logged={"main": 0.25},
                        running={"main": 0.5})
    found = [re.fullmatch(r"denoiser step (\d+)/100 loss ([\d.]+) ([\d.]+) it/s eta (\S+)", line) for line in lines]
    assert all(found), lines
    steps = [int(m.group(1)) for m in found]
    # 35 s after each line, and at the logged steps 48, 96 and 100 (a logged line restarts the count).
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40, 45, 48, 53, 58, 63, 68, 73, 78, 83, 88, 93, 96, 100]
    losses = {int(m.group(1)): m.group(2) for m in found}
    assert losses[48] == losses[96] == losses[100] == "0.25" and losses[5] == losses[53] == "0.5"
    assert {m.group(3) for m in found} == {"0.14"}  # 1 step per 7 s on the fake clock
    assert found[0].group(4) == "11m05s"  # 95 steps to go at 1/7 per second


def test_fast_training_prints_only_at_log_every():
    lines = train_lines("tokenizer", total=20, seconds_per_step=1.0, log_every=10, logged={"g": 1.0},
                        running={"g": 1.0})
    assert [line.split()[2] for line in lines] == ["10/20", "20/20"]


def test_no_time_lines_on_a_terminal():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    clock = FakeClock()
    with TrainProgress(console, description="denoiser", total=10, start=0, clock=clock, interval=1.0) as bar:
        for step in range(1, 10):
            clock.now += 5.0
            bar.advance(step)
            bar.tick(step, lambda: {"main": 0.5})
    assert "step 3/10" not in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())


def test_sampling_and_evaluation_loops_print_every_interval():
    console, buffer = plain_console()
    clock = FakeClock()
    with progress(console, 1000, "evaluate w=2", clock=clock) as advance:
        for _ in range(1000):
            clock.now += 7.0  # a denoiser call every 7 s; a tenth of the loop takes 700 s
            advance(1)
    done = [int(re.match(r"evaluate w=2: (\d+)/1000", line).group(1))  # type: ignore[union-attr]
            for line in buffer.getvalue().splitlines()]
    assert done == list(range(5, 1001, 5))  # every 35 s (the tenths, 100, 200, ..., are among them)


def test_short_loops_keep_their_tenth_lines():
    console, buffer = plain_console()
    clock = FakeClock()
    with progress(console, 50, "latents", clock=clock) as advance:
        for _ in range(50):
            clock.now += 0.1
            advance(1)
    done = [line.split()[1] for line in buffer.getvalue().splitlines()]
    assert done == [f"{n}/50" for n in range(5, 51, 5)]


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), ("", DEFAULT_INTERVAL), ("soon", DEFAULT_INTERVAL),
                                                ("-1", DEFAULT_INTERVAL), ("nan", DEFAULT_INTERVAL)])
def test_the_interval_comes_from_the_environment(monkeypatch, value, seconds):
    monkeypatch.setenv(INTERVAL_ENV, value)
    assert line_interval() == seconds


def test_a_trainer_with_slow_steps_and_rare_log_lines_reports_in_between(tmp_path, monkeypatch):
    """The real clock: 30 ms steps, a line due every 50 ms, log_every far beyond the run."""
    monkeypatch.setenv(INTERVAL_ENV, "0.05")
    console, buffer = plain_console()
    make_trainer(make_gan(sleep=0.03), settings(steps=8, log_every=100, val_every=4), tmp_path, console=console,
                 validate=lambda model, step: {"score": 1.0}, description="tokenizer").fit(ToyPairs(8))
    lines = buffer.getvalue().splitlines()
    pattern = r"tokenizer step (\d+)/8 loss generator [\d.e+-]+ discriminator [\d.e+-]+ [\d.]+ it/s eta \S+"
    steps = [int(m.group(1)) for line in lines if (m := re.fullmatch(pattern, line))]
    assert steps[-1] == 8 and len(steps) >= 4, lines  # at least every other step, and the last
    assert steps == sorted(set(steps))
    # Before a validation, a log says what the time goes to.
    assert "tokenizer step 4/8 validating" in lines and "tokenizer step 8/8 validating" in lines


def test_the_default_interval_adds_no_lines_to_a_fast_run(tmp_path, monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    console, buffer = plain_console()
    make_trainer(make_gan(), settings(steps=6, log_every=3), tmp_path, console=console,
                 description="tokenizer").fit(ToyPairs(8))
    steps = [line.split()[2] for line in buffer.getvalue().splitlines()]
    assert steps == ["3/6", "6/6"]

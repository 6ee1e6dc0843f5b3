"""Stages of a run: tokenizer -> latents -> denoiser -> sample -> evaluate.

``run_recipe`` runs the recipe's stages in order into ``runs/<name>/``; each stage is skipped when
its outputs exist for the same recipe, resumed when it was interrupted, and refused when its outputs
were made by a different recipe (unless ``force``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from vqvdm_core.errors import UserError
from vqvdm_core.pipeline.context import RunContext
from vqvdm_core.pipeline.run_dir import RunDir
from vqvdm_core.pipeline.stages import ORDER
from vqvdm_core.recipe import Recipe

STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any]]] = {s.name: s.function for s in ORDER}
"""Each stage's ``run(ctx) -> info`` (from its declaration; a run calls it through this mapping)."""

MAIN_PROCESS_STAGES = frozenset(s.name for s in ORDER if s.main_process_only)
"""Stages run by rank 0 alone under torchrun; the training stages run on every process."""

__all__ = ["RunContext", "RunDir", "STAGE_FUNCTIONS", "check_files", "make_context", "open_run", "run_recipe"]


def make_context(recipe: Recipe, *, console: Console | None = None,
                 root: Path | None = None, path: Path | None = None) -> RunContext:
    """A context for ``recipe``'s run directory (under ``root`` if given, or the folder ``path``
    itself) on the recipe's device."""
    from vqvdm_core.runtime.devices import resolve_device

    from vqvdm_core.runtime import distributed as dist

    device = resolve_device(recipe.device)
    if dist.is_distributed() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dist.local_rank())  # one GPU per process under torchrun
    from vqvdm_core.engine.loggers import LoggerSet

    run = RunDir(recipe, root, path=path)
    loggers = LoggerSet.from_recipe(recipe, directory=run.path, enabled=dist.is_main())
    return RunContext(recipe=recipe, run=run, device=device, console=console or Console(),
                      log=run.logger(), loggers=loggers)


def run_recipe(recipe: Recipe, *, stages: Sequence[str] | None = None, force: bool = False,
               console: Console | None = None) -> RunContext:
    """Run ``stages`` (default: the recipe's) in pipeline order; return the context used.

    The run directory is locked for the duration (a second process refuses, naming this one).
    Warnings and the final error go to ``run.log`` too; a stage that raises is recorded as
    ``failed`` with its error in ``stage.json`` (the next run resumes it). The recipe's experiment
    loggers are closed at the end, also when a stage fails.
    """
    from vqvdm_core.runtime import distributed as dist

    dist.init_from_env(device=recipe.device)
    ctx = make_context(recipe, console=console)
    with contextlib.ExitStack() as held:
        held.enter_context(runtime_policy(recipe))
        def take_lock() -> str:
            previous = held.enter_context(ctx.run.lock(f"vqvdm run {recipe.name}"))
            return previous or ""

        previous = _decided_on_main(take_lock)
        held.enter_context(_warnings_to_log(ctx))
        held.enter_context(ctx.loggers)  # closed when the run ends, told whether it failed
        if previous:
            ctx.say(f"took over {ctx.run.path} from process {previous}, which is no longer running")
        try:
            _run_stages(ctx, stages=stages, force=force)
        except BaseException as exc:
            if dist.is_main():
                ctx.log.error(f"run stopped: {type(exc).__name__}: {exc}")
            raise
    return ctx


def runtime_policy(recipe: Recipe) -> contextlib.AbstractContextManager[None]:
    """The recipe's ``runtime`` flags (TF32, cuDNN autotuning, deterministic kernels) while it works."""
    from vqvdm_core.runtime.backend_policy import backend_policy

    r = recipe.runtime
    return backend_policy(tf32=r.tf32, cudnn_benchmark=r.cudnn_benchmark, deterministic=r.deterministic)


def _run_stages(ctx: RunContext, *, stages: Sequence[str] | None, force: bool) -> None:
    from vqvdm_core.runtime import distributed as dist
    from vqvdm_core.runtime.seeding import seed_everything

    recipe = ctx.recipe
    wanted = [s.name for s in ORDER if s.name in (stages or recipe.stages)]
    if not force:
        # Refuse a recipe that does not match the run's stages before anything is written, so
        # that the run keeps the recipe.yaml its outputs were made by.
        _decided_on_main(lambda: ",".join(ctx.run.plan(stage, force=False) for stage in wanted))
    # ... and one whose pending stages would miss a weight file or a data folder.
    # ... and one whose models or clips could never fit in this device's memory (a typo'd size).
    def preflight() -> str:
        pending = [s for s in wanted if force or not ctx.run.up_to_date(s)]
        return check_files(ctx, pending) + check_sizes(ctx, pending)

    _decided_on_main(preflight)
    if dist.is_main():
        ctx.run.write_recipe()
        ctx.run.write_environment()
    ctx.say(f"run '{recipe.name}' -> {ctx.run.path} on {ctx.device}; stages: {', '.join(wanted)}")
    ran: dict[str, float] = {}
    for stage in wanted:
        action = _decided_on_main(lambda: ctx.run.plan(stage, force=force))
        if action == "skip":
            ctx.say(f"[{stage}] up to date, skipped")
            continue
        ctx.say(f"[{stage}] {'resuming' if action == 'resume' else 'starting'}")
        if dist.is_main():
            ctx.run.begin(stage)
        dist.barrier()
        solo = stage in MAIN_PROCESS_STAGES
        if solo and not dist.is_main():
            dist.wait_for_main()  # the other processes idle while rank 0 works, for hours if need be
            continue
        seed_everything(recipe.seed)
        start = time.perf_counter()
        try:
            info = STAGE_FUNCTIONS[stage](ctx)
        except BaseException as exc:
            if dist.is_main():
                with contextlib.suppress(UserError):  # e.g. the disk is full: the record stays 'running',
                    ctx.run.fail(stage, f"{type(exc).__name__}: {exc}")  # which resumes the same way
                ctx.log.error(f"[{stage}] failed: {type(exc).__name__}: {exc}")
            raise
        info["seconds"] = round(time.perf_counter() - start, 2)
        if dist.is_main():
            ctx.run.finish(stage, info)
        ctx.say(f"[{stage}] done in {info['seconds']:.1f}s")
        ran[stage] = info["seconds"]
        if solo:
            dist.wait_for_main()
        else:
            dist.barrier()
    if dist.is_main():
        from vqvdm_core.reporting.report import build_report

        try:  # the stages are done: a report that cannot be written is a warning, not a failed run
            ctx.say(f"report: {build_report(ctx.run.path)}")
        except (UserError, OSError) as exc:  # e.g. report.html is a directory; the disk is full
            ctx.console.print(f"warning: no report written: {exc}", highlight=False, markup=False, soft_wrap=True)
            ctx.log.warning(f"no report written: {exc}")
        for line in run_summary(ctx.run, ran):
            ctx.say(line)


def run_summary(run: RunDir, ran: dict[str, float]) -> list[str]:
    """The closing lines of ``vqvdm run``: what ran and how long, where to look, what to try next."""
    lines = []
    if ran:
        total = sum(ran.values())
        times = ", ".join(f"{stage} {_duration(sec)}" for stage, sec in ran.items())
        lines.append(f"stages done in {_duration(total)} ({times})")
    shown = _shown_path(run.path)
    looks = [(label, run.path / rel) for label, rel in (   # the report's line is printed before
        ("samples", "sample/grid.mp4"), ("scores", "evaluate/metrics.json"))]
    lines += [f"  {label}: {_shown_path(path)}" for label, path in looks if path.is_file()]
    if run.up_to_date("denoiser"):
        lines.append("next: more clips (--label, --fps, --guidance), longer ones, a folder to share:")
        lines.append(f"  vqvdm sample {shown} --num 4 --out clips.mp4")
        lines.append(f"  vqvdm sample {shown} --frames 64 --out long.mp4")
        lines.append(f"  vqvdm export {shown} exports/{run.path.name}")
    return lines


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec} s" if minutes else f"{sec} s"


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter to copy)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _warnings_to_log(ctx: RunContext) -> Iterator[None]:
    """Python warnings raised while a run works are shown as usual and also written to run.log, each
    text once per run (Python's own filter tells warnings apart by the line that raised them: the
    same bad file met by the training and the validation clips would be reported twice)."""
    original = warnings.showwarning
    shown: set[tuple[type[Warning], str]] = set()

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        key = (category, str(message))
        if key in shown:
            return
        shown.add(key)
        ctx.log.warning(f"{category.__name__}: {message}")
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def check_files(ctx: RunContext, stages: list[str]) -> str:
    """Raise :class:`MissingFileError` listing what ``stages`` of ``ctx``'s recipe would not find
    (data folders, weight files, logger packages), before anything is written."""
    from vqvdm_core.errors import MissingFileError
    from vqvdm_core.pipeline.preflight import missing_files

    problems = missing_files(ctx.recipe, stages=stages)
    if problems:
        raise MissingFileError(f"the stages {', '.join(stages)} would not find what they need; nothing was "
                               "run:\n  " + "\n  ".join(problems))
    return ""


def check_sizes(ctx: RunContext, stages: list[str]) -> str:
    """Raise :class:`~vqvdm_core.pipeline.model_size.SizeProblem` when ``stages`` of ``ctx``'s recipe
    need more memory for the model or one batch of clips than ``ctx.device`` has, before any work."""
    from vqvdm_core.pipeline.model_size import check_sizes as check

    check(ctx.recipe, stages=stages, device=ctx.device)
    return ""


def _decided_on_main(decide: Callable[[], str]) -> str:
    """Run ``decide`` on rank 0 and give every process its answer (or its user error)."""
    from vqvdm_core.runtime import distributed as dist

    if not dist.is_distributed():
        return decide()
    answer: tuple[str, str] = ("", "")
    if dist.is_main():
        try:
            answer = ("ok", decide())
        except UserError as exc:
            answer = ("error", str(exc))
    kind, value = dist.all_gather_object(answer)[0]
    if kind == "error":
        raise UserError(value)
    return value


def open_run(path: Path, overrides: Sequence[str] = (), *, console: Console | None = None) -> RunContext:
    """A context for an existing run directory (or a file inside it), from its resolved recipe."""
    from vqvdm_core.recipe import load_recipe

    path = Path(path)
    run_dir = next((p for p in [path, *path.parents] if (p / "recipe.yaml").is_file()), None)
    if run_dir is None:
        raise UserError(f"{path} is not inside a run directory (no recipe.yaml found above it)")
    recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    # The folder found is the run, whatever its name: a copied or moved run (rsync from a cluster,
    # ``cp -r runs/quickstart /scratch/qs-copy``) samples, evaluates and exports where it now is.
    return make_context(recipe, console=console, path=run_dir)

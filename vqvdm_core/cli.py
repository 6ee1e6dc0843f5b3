"""The ``vqvdm`` command line: list components, validate and run recipes, sample, evaluate, report,
export.

A user mistake (bad recipe, missing file, unknown component) prints one clear message and exits
non-zero without a traceback; ``VQVDM_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vqvdm_core.errors import RecipeError, UserError, brief
from vqvdm_core.recipe import STAGES, load_recipe
from vqvdm_core.registry import KINDS, REGISTRY, static_problem

app = typer.Typer(
    name="vqvdm",
    help="Latent video diffusion with a 3D VQGAN (VQ-VDM) from swappable plug-in components.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def debug() -> bool:
    return os.environ.get("VQVDM_DEBUG", "") not in ("", "0", "false", "no")


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (CPU allocator, CUDA, or Python's MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
"""The OSErrors of a full disk or quota: one message (with the free space), not a traceback."""


def _traceback_if_debug() -> None:
    """With VQVDM_DEBUG=1, print the traceback of the exception being handled (the exit code stays
    the one the error has without it)."""
    if debug():
        import traceback

        traceback.print_exc()


def user_errors(fn: F) -> F:
    """Turn a :class:`UserError` into one message and its exit code (traceback with VQVDM_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            _traceback_if_debug()
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            _traceback_if_debug()
            err.print(f"[bold red]error:[/] out of memory ({brief(exc)}). The clips, frame size or batch "
                      "asked for do not fit on this device: lower the batch size (--batch-size, or the "
                      "recipe's batch_size), the number of frames or the frame size.",
                      highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in _NO_SPACE:
                raise
            _traceback_if_debug()  # a write that does not go through io.atomic (a log line, a probe cache)
            from vqvdm_core.io.atomic import write_failure

            text = (str(write_failure(Path(exc.filename), exc)) if exc.filename else
                    f"a write failed: {exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '?')}): free "
                    "space on the disk of the run's output folder and run the command again")
            err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


StageChoice = Enum("StageChoice", {name: name for name in STAGES}, type=str)  # type: ignore[misc]
"""The pipeline's stages as a fixed choice (listed in --help and completed by the shell)."""

DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (default: the recipe's device)."
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _device(value: str | None) -> str | None:
    """Refuse a device that is not of a known form before any work (whether it exists is checked
    when it is used)."""
    if value is not None and not _DEVICE.fullmatch(value.strip().lower()):
        raise typer.BadParameter(f"'{value}' is not a device; use {DEVICE_HELP.split(' (')[0]}")
    return value


def _complete_device(incomplete: str) -> list[str]:
    import torch

    names = ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count())), "mps"]
    return [n for n in names if n.startswith(incomplete)]


def _complete_sampler(incomplete: str) -> list[str]:
    return [n for n in REGISTRY.names("sampler") if n.startswith(incomplete)]


def _device_option() -> Any:
    return typer.Option(None, "--device", help=DEVICE_HELP, callback=_device,
                        autocompletion=_complete_device)


def _sampler_option() -> Any:
    return typer.Option(None, "--sampler", help=_sampler_help(), callback=_check_sampler,
                        autocompletion=_complete_sampler)


def _sampler_help() -> str:
    names = ", ".join(REGISTRY.names("sampler")) or "none registered"
    return f"Sampler: {names} (default: the recipe's)."


def _known_frames_method(value: str) -> str:
    from vqvdm_core.system.long_video import KNOWN_FRAMES_METHODS

    if value not in KNOWN_FRAMES_METHODS:
        raise typer.BadParameter(f"'{value}' is not one of: {', '.join(KNOWN_FRAMES_METHODS)}")
    return value


def _check_sampler(name: str | None) -> str | None:
    """Refuse an unregistered sampler name before any work (with the names and a near match)."""
    if name is not None:
        try:
            REGISTRY.entry("sampler", name)
        except UserError as exc:
            raise typer.BadParameter(str(exc)) from None
    return name


def _finite(value: Any) -> Any:
    """Refuse ``nan`` and ``inf`` in a float option (one value or a list) before any work."""
    for v in value if isinstance(value, list) else [value]:
        if v is not None and not math.isfinite(v):
            raise typer.BadParameter(f"{v} is not a finite number")
    return value


def _finite_non_negative(value: float | None) -> float | None:
    """A finite number >= 0 (nan is named as not finite, not as out of range)."""
    _finite(value)
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value} is negative; give a number >= 0")
    return value


def _fps_values(value: list[float]) -> list[float]:
    """FPS values must be positive and finite (the FPS conditioner embeds them; speed follows 1/FPS)."""
    for v in value:
        if not (math.isfinite(v) and v > 0):
            raise typer.BadParameter(f"FPS values must be positive finite numbers, got {v}")
    return value


def _version(value: bool) -> None:
    if value:
        from vqvdm_core import __version__

        out.print(f"vqvdm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Latent video diffusion with a 3D VQGAN (VQ-VDM) from swappable plug-in components."""


# --------------------------------------------------------------------------------------------
# list-components
# --------------------------------------------------------------------------------------------


def _config_fields(cls: type) -> list[dict[str, Any]]:
    """Each Config field: name, type as a recipe author reads it (choices, tuple shapes, bounds),
    default and description."""
    from vqvdm_core.recipe.docs import field_type

    fields = []
    for name, info in cls.Config.model_fields.items():  # type: ignore[attr-defined]
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append({
            "name": name,
            "type": field_type(info),
            "default": default,
            "required": info.is_required(),
            "description": info.description or "",
        })
    return fields


@app.command("list-components")
@user_errors
def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help=f"One of: {', '.join(KINDS)}."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Import here each component whose module imported in the child "
                                 "process, and show its Config fields."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Import each plug-in module in a child process (a few seconds) to "
                               "tell 'available' from 'broken'; --no-check lists them 'unchecked'."),
) -> None:
    """List the registered components: 'available' (imports, checked in a child process), 'loaded',
    'broken' (with the error), 'duplicate' or 'unchecked'; --verbose then imports and validates here
    each component whose module imported in the child."""
    entries = REGISTRY.entries(kind)
    unloaded = [e for e in entries if e.obj is None and e.error is None and e.conflict is None]
    problems = {e.target: static_problem(e.target) for e in unloaded}  # parsed from source, once each
    imported: dict[str, str | None] = {}
    if check:
        imported = REGISTRY.check_imports([e for e in unloaded if not problems[e.target]])
    if verbose:
        # Only what imported in the child is imported here: a module that kills its process
        # (os._exit, a crash) or raises KeyboardInterrupt at import stays in the child.
        for e in unloaded:
            importable = e.target in imported and imported[e.target] is None
            if not problems[e.target] and (importable or not check):
                try:
                    REGISTRY.load(e.kind, e.name)
                except UserError:
                    pass  # recorded on the entry: shown 'broken' with its error
    rows = []
    for e in entries:
        row: dict[str, Any] = {
            "kind": e.kind,
            "name": e.name,
            "distribution": e.distribution,
            "version": e.version,
            "target": e.target,
            "summary": e.summary(),
            "status": e.status,
        }
        if e.error:
            row["error"] = e.error
        elif e.obj is None and e.target in problems:
            problem = problems[e.target]
            if problem:
                row["status"], row["error"] = "broken", problem
            elif e.target not in imported:
                row["status"] = "unchecked"  # not imported here, and the child did not get to it
            elif imported[e.target] is not None:
                row["status"], row["error"] = "broken", imported[e.target]
        if e.conflict is not None:
            row["error"] = f"also provided by {e.conflict.provider}"
        if verbose and e.obj is not None:
            row["config"] = _config_fields(e.obj)
        rows.append(row)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="vqvdm components", show_lines=verbose)
    for col in ("kind", "name", "distribution", "summary", "status"):
        table.add_column(col, overflow="fold")
    styles = {"broken": "red", "duplicate": "red", "loaded": "green", "available": "", "unchecked": "yellow"}
    for row in rows:
        summary = row["summary"]
        if "error" in row:
            summary = f"{summary}\n[red]{row['error']}[/]" if summary else f"[red]{row['error']}[/]"
        status = row["status"]
        table.add_row(row["kind"], row["name"], row["distribution"], summary,
                      f"[{styles[status]}]{status}[/]" if styles[status] else status)
    out.print(table)
    for row in rows:
        if row.get("config") is not None:
            out.print(f"\n[bold]{row['kind']} {row['name']}[/] [dim]({escape(row['target'])})[/]")
            for f in row["config"] or []:
                value = "[i]required[/]" if f["required"] else escape(_shown(f["default"]))
                out.print(f"  [bold]{f['name']}[/]: {escape(f['type'])} = {value}", soft_wrap=True)
                if f["description"]:
                    out.print(f"      {escape(f['description'])}", style="dim", soft_wrap=True)


def _shown(value: Any) -> str:
    """A default as a recipe would spell it (JSON), else its repr."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return repr(value)


# --------------------------------------------------------------------------------------------
# validate / run
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def validate(
    recipes: list[Path] = typer.Argument(..., help="Recipe files."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    check_data: bool = typer.Option(
        False, "--check-data", help="Also check that the data folders, split files and weight files the "
        "recipe's stages need exist (looks only; takes a second)."),
) -> None:
    """Validate recipes, reporting every problem at once (exit 0 valid, 2 invalid)."""
    bad = 0
    for path in recipes:
        try:
            recipe = load_recipe(path, set_)
        except RecipeError as exc:
            bad += 1
            err.print(f"[red]✗[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            continue
        parts = ", ".join(f"{kind}={spec.name}" for _, kind, spec in recipe.components())
        if check_data:
            from vqvdm_core.pipeline.preflight import missing_files

            problems = missing_files(recipe, stages=recipe.stages)
            if problems:
                bad += 1
                err.print(f"[red]✗[/] {path}: valid, but its stages would not find:\n  " + "\n  ".join(problems),
                          highlight=False, soft_wrap=True, markup=False)
                continue
            parts += "; data and weight files found"
        out.print(f"[green]✓[/] {path}: valid ({parts})", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(2)


@app.command()
@user_errors
def run(
    recipe_path: Path = typer.Argument(..., metavar="RECIPE", help="Recipe file."),
    stage: list[StageChoice] = typer.Option([], "--stage", help="Run only these stages (repeatable)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    device: Optional[str] = _device_option(),
    force: bool = typer.Option(False, "--force", help="Overwrite stage outputs made by another recipe."),
) -> None:
    """Run a recipe's stages in order into runs/<name>/ (skipping stages already done)."""
    overrides = list(set_) + ([f"device={device}"] if device else [])
    recipe = load_recipe(recipe_path, overrides)
    from vqvdm_core.pipeline import run_recipe

    run_recipe(recipe, stages=[s.value for s in stage] or None, force=force, console=out)


@app.command()
@user_errors
def sample(
    run_or_ckpt: Path = typer.Argument(..., metavar="RUN_OR_CKPT",
                                       help="A run directory (or a file inside one), or a pipeline folder "
                                       "made by `vqvdm export`."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Clips per (label, fps) pair."),
    label: list[int] = typer.Option([], "--label", "-l", help="Class index (repeatable; default all)."),
    fps: list[float] = typer.Option([], "--fps", help="FPS value (repeatable; default the data's).",
                                    callback=_fps_values),
    condition: list[str] = typer.Option(
        [], "--condition", "-c", metavar="FIELD=V[,V...]",
        help="Values of another conditioner field, cycled over the clips (repeatable, e.g. motion=0.2,0.9; "
        "default: the values the latents stage recorded)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", "-w", help="Guidance scale w.",
                                             callback=_finite),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="Sampling steps (respaced; default: the recipe's sample.steps)."),
    sampler: Optional[str] = _sampler_option(),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed and settings give the same clips."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Clips denoised at once."),
    out_path: Path = typer.Option(Path("samples.mp4"), "--out", "-o",
                                  help="Grid video (.mp4 or .gif); the other format is written beside it."),
    device: Optional[str] = _device_option(),
    precision: Optional[Literal["fp32", "bf16", "fp16"]] = typer.Option(
        None, "--precision", help="Autocast precision (fp16: CUDA only; default: the recipe's sample.precision)."),
    frames: Optional[int] = typer.Option(
        None, "--frames", min=1, help="Frames per clip (default: the trained length). Longer clips are "
        "generated window by window, each conditioned on the end of the one before."),
    context: Optional[str] = typer.Option(
        None, "--context", help="Continue this clip: a video file, or train:INDEX / val:INDEX (a clip of "
        "the recipe's data). Its frame rate is the FPS unless --fps is given; no class unless --label."),
    context_frames: Optional[int] = typer.Option(
        None, "--context-frames", min=1, help="Given frames of --context to keep and continue "
        "(default: half the trained length)."),
    overlap: Optional[int] = typer.Option(
        None, "--overlap", min=1, help="Latent frames each window keeps from the one before "
        "(default: half a window)."),
    known_frames: str = typer.Option(
        "replacement", "--known-frames", help="How a window is held to its known frames: replacement "
        "(fast) or reconstruction (VDM's reconstruction guidance, a backward pass per step).",
        callback=_known_frames_method),
    reconstruction_weight: float = typer.Option(
        2.0, "--reconstruction-weight", callback=_finite_non_negative,
        help="Reconstruction guidance weight w_r (with --known-frames reconstruction)."),
    known_guidance: Optional[float] = typer.Option(
        None, "--known-guidance", callback=_finite_non_negative,
        help="Guidance scale on the known frames (history guidance) for a denoiser trained with "
        "known_frames: 1 = off; default: the recipe's sample.known_guidance."),
) -> None:
    """Generate a grid of clips from a trained run or an exported pipeline (MP4 and GIF); long clips with
    --frames, continue a given clip with --context."""
    import torch

    from vqvdm_core.pipeline.conditions import grid
    from vqvdm_core.pipeline.context_clip import load_context, mark_generated
    from vqvdm_core.pipeline.generate import generate
    from vqvdm_core.pipeline.sample_source import open_sample_source
    from vqvdm_core.pipeline.samples_file import save_samples
    from vqvdm_core.io.video import write_grid

    if context is None and context_frames is not None:
        raise typer.BadParameter("--context-frames needs --context", param_hint="--context-frames")
    source = open_sample_source(run_or_ckpt, device=device, console=out)  # a run or an exported pipeline
    meta, system, defaults = source.meta, source.system, source.settings
    if condition:
        meta = {**meta, "condition_values": {**(meta.get("condition_values") or {}),
                                             **_condition_values(condition, system)}}
    clip_frames = system.clip_shape[0]
    if context is not None:  # the labels and FPS values the grid below is made of
        counted_labels, counted_fps = list(label) or None, list(fps) or [0.0]
    else:
        counted_labels, counted_fps = label or "all", list(fps) or None
    _check_sample_memory(meta, system, labels=counted_labels, fps=counted_fps, num=num, frames=frames or clip_frames)
    given = None
    if context is not None:
        k = context_frames or clip_frames // 2
        clip = load_context(context, source.run, context_frames=k, max_frames=max(frames or clip_frames, k))
        fps_values = list(fps) or ([clip.fps] if clip.fps is not None else [])
        if not fps_values and any(c.field == "fps" for c in system.conditioners):
            raise UserError(f"--context {clip.source} has no frame rate: pass --fps")
        fps_values = fps_values or [0.0]
        base = grid(meta, labels=list(label) or None, fps=fps_values, per_condition=num)
        n = len(base)
        given = clip.video[:, :, :k].expand(n, -1, -1, -1, -1)
        frames = frames or clip_frames
        system.plan(frames=frames, context=given[:1], overlap=overlap)  # every setting checked before sampling
        conditions = base
    else:
        conditions = grid(meta, labels=label or "all", fps=fps or None, per_condition=num)
        if frames is not None or overlap is not None:
            system.plan(frames=frames, overlap=overlap)
    grids, clips = _sample_outputs(out_path)  # every file written, checked before sampling
    _refuse_writing_into(source, out_path, [*grids, clips])
    built = system.resolve_sampler(sampler if sampler is not None else defaults.sampler)
    with source.backend_policy():
        video = torch.cat([v for _, v in generate(
            system, conditions, batch_size=batch_size, steps=steps or defaults.steps, sampler=built,
            guidance_scale=guidance, seed=seed, device=source.device, precision=precision or defaults.precision,
            console=out, frames=frames, context=given, overlap=overlap, known_frames=known_frames,
            reconstruction_weight=reconstruction_weight,
            known_guidance=known_guidance if known_guidance is not None else defaults.known_guidance)])
    shown, captions = video, conditions.captions
    nrow = max(1, len(set(conditions.fps)) * num)
    if context is not None:
        # The given clip (as far as it goes, then its last frame held) beside its continuations;
        # generated frames carry a red border.
        real = clip.video[:, :, :video.shape[2]]
        if real.shape[2] < video.shape[2]:
            real = torch.cat([real, real[:, :, -1:].expand(-1, -1, video.shape[2] - real.shape[2], -1, -1)], 2)
        shown = torch.cat([real, mark_generated(video, given.shape[2])])
        captions = ["given"] + captions
        out.print(f"grid: the given clip ({clip.source}) first, then its continuations; frames from "
                  f"{given.shape[2]} on are generated (red border)")
        nrow = len(shown)
    for target in grids:
        write_grid(shown, target, fps=max(conditions.fps) or 8.0, nrow=nrow, labels=captions)
        out.print(f"wrote {target}")
    save_samples(clips, video, conditions.labels, conditions.fps, conditions.values)
    out.print(f"wrote {clips} (every clip with its conditions, for `vqvdm evaluate`)")


def _check_sample_memory(meta: dict[str, Any], system: Any, *, labels: Any, fps: list[float] | None, num: int,
                         frames: int) -> None:
    """Refuse before sampling when the clips asked for cannot be held in memory: `vqvdm sample` keeps
    every clip (float32, on the CPU) until it writes them, at the peak three times (the batches, the
    joined tensor, the grid)."""
    from vqvdm_core.pipeline.conditions import grid_size
    from vqvdm_core.runtime.devices import check_fits

    n = grid_size(meta, labels=labels, fps=fps, per_condition=num)
    _, height, width = system.clip_shape
    clip_bytes = 3 * frames * height * width * 4
    check_fits(3 * n * clip_bytes, what=f"sampling {n:,} clips of {frames}x{height}x{width} "
               f"({num:,} per class and FPS value)",
               advice="Ask for fewer clips (--num, --label, --fps) or frames (--frames) per call.")


def _condition_values(options: list[str], system: Any) -> dict[str, list[float]]:
    """``--condition FIELD=V[,V...]`` options -> field -> values, each field read by a conditioner."""
    read = sorted({cond.field for cond in system.conditioners} - {"label", "fps"})
    out: dict[str, list[float]] = {}
    for option in options:
        name, sep, text = option.partition("=")
        name = name.strip()
        if name in ("label", "fps"):
            raise typer.BadParameter(f"use --{name} for '{name}'", param_hint="--condition")
        if not sep or not name or name not in read:
            raise typer.BadParameter(f"{option!r}: expected FIELD=V[,V...] with FIELD one of the system's "
                                     f"other condition fields ({', '.join(read) or 'none'})", param_hint="--condition")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise typer.BadParameter(f"{option!r}: the values must be numbers", param_hint="--condition") from None
        if not all(math.isfinite(v) for v in values):
            raise typer.BadParameter(f"{option!r}: the values must be finite", param_hint="--condition")
        out[name] = values
    return out


def _check_writable(path: Path, *, example: str) -> None:
    """Refuse an output path whose folder cannot take it, before any sampling; ``example`` is the file
    name suggested when ``path`` is a directory (``samples.mp4``, ``metrics.json``)."""
    from vqvdm_core.io.paths import check_can_write

    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name such as {path / example}")
    check_can_write(path, what="--out")


def _sample_outputs(out_path: Path) -> tuple[list[Path], Path]:
    """The files ``vqvdm sample --out PATH`` writes: the grid videos (PATH and the other format beside
    it) and the clips (PATH's ``.safetensors``), each refused before sampling if it cannot be written."""
    from vqvdm_core.io.video import WRITABLE_SUFFIXES

    _check_writable(out_path, example="samples.mp4")
    if out_path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise UserError(f"--out {out_path}: the grid video must end in one of {', '.join(WRITABLE_SUFFIXES)}")
    grids = sorted({out_path, out_path.with_suffix(".gif" if out_path.suffix == ".mp4" else ".mp4")})
    clips = out_path.with_suffix(".safetensors")
    for path in [*grids, clips]:
        if path != out_path and path.is_dir():
            raise UserError(f"--out {out_path} also writes {path}, which is a directory: move it or choose "
                            "another --out")
    return grids, clips


def _refuse_writing_into(source: Any, out_path: Path, paths: list[Path]) -> None:
    """`vqvdm sample` never writes into a run's stage folders (only `vqvdm run` does: their files are
    the stages' records) nor into an exported pipeline folder (its files are checksummed)."""
    if source.run is not None:
        guarded = {source.run.run.stage_dir(stage).resolve(): f"the run's '{stage}' stage folder, whose files "
                   "only `vqvdm run` writes" for stage in STAGES}
    elif source.folder is not None:
        guarded = {source.folder.resolve(): "the exported pipeline folder, whose files are checksummed"}
    else:
        guarded = {}
    for path in paths:
        resolved = path.resolve()
        for folder, what in guarded.items():
            if resolved == folder or folder in resolved.parents:
                raise UserError(f"--out {out_path} would write {path} into {what} ({folder}): choose a "
                                "path outside it")


@app.command()
@user_errors
def evaluate(
    target: Path = typer.Argument(..., metavar="RUN_OR_SAMPLES",
                                  help="A run directory, or a samples.safetensors file inside one."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated metric names (default: the recipe's)."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", min=1,
                                              help="Clips generated per guidance scale (default: the recipe's)."),
    guidance: list[float] = typer.Option([], "--guidance", "-w", help="Guidance scale (repeatable).",
                                         callback=_finite),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps (respaced)."),
    sampler: Optional[str] = _sampler_option(),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    device: Optional[str] = _device_option(),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Report file (default: beside the evaluate stage's metrics.json, named by "
        "the settings; never the stage's own file)."),
) -> None:
    """Score a run (generating clips) or a samples file; writes a JSON report and prints a table.

    For a run: <run>/evaluate/metrics-<settings hash>.json, beside the stage's own metrics.json,
    which is never overwritten (the same settings give the same name). For samples (e.g.
    <run>/sample/samples.safetensors, as written by the sample stage and `vqvdm sample`):
    <name>.metrics.json beside the file. Real clips for FVD / KVD come from the recipe of the run the
    file belongs to.
    """
    from vqvdm_core.errors import MissingFileError
    from vqvdm_core.pipeline import check_files, open_run
    from vqvdm_core.pipeline.stages import evaluate as evaluate_stage

    # --sampler first, so that --set evaluate.sampler.<option>=... can refine it.
    overrides = ([f"evaluate.sampler={sampler}"] if sampler else []) + list(set_)
    if metrics:
        names = [m.strip() for m in metrics.split(",") if m.strip()]
        overrides.append(f"evaluate.metrics=[{', '.join(names)}]")
    if num_samples:
        overrides.append(f"evaluate.num_samples={num_samples}")
    if guidance:
        overrides.append(f"evaluate.guidance_scales=[{', '.join(map(str, guidance))}]")
    if steps:
        overrides.append(f"evaluate.steps={steps}")
    if device:
        overrides.append(f"device={device}")
    if not target.exists():  # else a path inside a run would evaluate the whole run
        raise MissingFileError(f"{target} does not exist: give a run directory or a samples file inside one")
    ctx = open_run(target, overrides, console=out)
    if out_path is not None:
        _check_evaluate_out(out_path, target, ctx.run)
    if target.is_file():
        written = out_path or target.with_name(f"{target.stem}.metrics.json")
        with ctx.loggers:  # the recipe's experiment loggers get the scores; closed even on failure
            evaluate_stage.score_samples(ctx, target, written)
    else:
        key = ctx.recipe.hash("evaluate", "guidance", "data.val", "sample.fps")[:8]
        written = out_path or ctx.run.stage_dir("evaluate") / f"metrics-{key}.json"
        check_files(ctx, ["evaluate"])  # metric weights, real clips, logger packages: before any work
        with ctx.run.lock("vqvdm evaluate") as previous, ctx.loggers:
            if previous is not None:
                out.print(f"took over {ctx.run.path} from process {previous}, which is no longer running")
            evaluate_stage.run(ctx, out=written)
    out.print(f"wrote {written}")


def _check_evaluate_out(out_path: Path, target: Path, run: Any) -> None:
    """Refuse an ``evaluate --out`` that cannot be written, is not JSON, or would overwrite a file of the
    run (the stage's own report, the samples being scored, a record, weights, the recipe) other than
    an earlier ``vqvdm evaluate`` report."""
    _check_writable(out_path, example="metrics.json")
    resolved = out_path.resolve()
    evaluate_dir = run.stage_dir("evaluate").resolve()
    if resolved == evaluate_dir / "metrics.json":
        raise UserError(f"--out {out_path} is the evaluate stage's own report, which `vqvdm evaluate` never "
                        "overwrites: choose another path")
    if target.is_file() and resolved == target.resolve():
        raise UserError(f"--out {out_path} is the samples file being evaluated: choose another path")
    if out_path.suffix.lower() != ".json":
        raise UserError(f"--out {out_path}: the report is a JSON file; give a path ending in .json")
    earlier_report = resolved.name.endswith(".metrics.json") or (
        resolved.parent == evaluate_dir and resolved.name.startswith("metrics-"))
    if resolved.exists() and run.path.resolve() in resolved.parents and not earlier_report:
        raise UserError(f"--out {out_path} is a file of the run {run.path} (a record, weights or the recipe), "
                        "which `vqvdm evaluate` never overwrites: choose a new file")


@app.command()
@user_errors
def report(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory.")) -> None:
    """Regenerate <run>/report.html from what the run has produced."""
    from vqvdm_core.reporting.report import build_report

    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no recipe.yaml)")
    out.print(f"wrote {build_report(run_dir)}")


@app.command()
@user_errors
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A trained run directory (or a file inside one)."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="The pipeline folder to write (new or empty)."),
    force: bool = typer.Option(False, "--force", help="Replace a pipeline already exported to OUT_DIR."),
) -> None:
    """Write a trained run as a self-contained pipeline folder (safetensors weights, JSON configs, an index
    with sha256s, a README model card) for LatentVideoDiffusion.from_pretrained and `vqvdm sample OUT_DIR`."""
    from vqvdm_core.pipeline.export import export_run

    written = export_run(run_dir, out_dir, force=force)
    out.print(f"wrote {written} (load it with LatentVideoDiffusion.from_pretrained, or `vqvdm sample {written}`)",
              highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def bench(
    recipe_path: Path = typer.Argument(..., metavar="RECIPE", help="Recipe file."),
    steps: int = typer.Option(100, "--steps", min=1, help="Sampling steps (Table 3: 100)."),
    repeats: int = typer.Option(1, "--repeats", "-r", min=1, help="Timed passes of each system."),
    pixel_steps: int = typer.Option(2, "--pixel-steps", min=1,
                                    help="Steps timed in pixel space; the total is extrapolated."),
    pixel_size: Optional[int] = typer.Option(None, "--pixel-size", min=1,
                                             help="Pixel-space frame size (default: half the recipe's, "
                                                  "as Table 3's 64 vs 128)."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Clips sampled per pass."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    device: Optional[str] = _device_option(),
    precision: Literal["auto", "fp32", "bf16", "fp16"] = typer.Option(
        "auto", "--precision", help="auto: bf16 only where a probe finds it faster than fp32."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampled noise."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="torch CPU threads (default: torch's)."),
    pixel_tokenizer: Optional[str] = typer.Option(
        None, "--pixel-tokenizer", help="Tokenizer of the pixel system (default: the registered one "
                                        "whose class declares pixel_space)."),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
) -> None:
    """Time sampling of the recipe's latent system against pixel space (the paper's Table 3)."""
    from vqvdm_core.profiling.table3 import print_report, run_bench

    recipe = load_recipe(recipe_path, set_)
    report = run_bench(recipe, steps=steps, repeats=repeats, pixel_steps=min(pixel_steps, steps),
                       pixel_size=pixel_size, clips=num, device=device, precision=precision,
                       seed=seed, threads=threads, overrides=set_, pixel_tokenizer=pixel_tokenizer,
                       say=lambda line: err.print(line, highlight=False, markup=False))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        return
    print_report(report, out)

def main() -> None:
    """Console-script entry point."""
    app(prog_name="vqvdm")


if __name__ == "__main__":
    main()

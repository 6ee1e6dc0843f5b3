"""The ``vqvdm`` command line: list components, validate and run recipes, sample, evaluate, report.

A user mistake (bad recipe, missing file, unknown component) prints one clear message and exits
non-zero without a traceback; ``VQVDM_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from vqvdm_core.errors import RecipeError, UserError, brief
from vqvdm_core.recipe import STAGES, load_recipe
from vqvdm_core.registry import KINDS, REGISTRY, static_problem

app = typer.Typer(
    name="vqvdm",
    help="Latent video diffusion with a 3D VQGAN (VQ-VDM) from swappable plug-in components.",
    no_args_is_help=True,
    add_completion=False,
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


def user_errors(fn: F) -> F:
    """Turn a :class:`UserError` into one message and its exit code (traceback with VQVDM_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if debug():
                raise
            err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (MemoryError, RuntimeError) as exc:
            if debug() or not _out_of_memory(exc):
                raise
            err.print(f"[bold red]error:[/] out of memory ({brief(exc)}). The clips, frame size or batch "
                      "asked for do not fit on this device: lower the batch size (--batch-size, or the "
                      "recipe's batch_size), the number of frames or the frame size.",
                      highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _sampler_help() -> str:
    names = ", ".join(REGISTRY.names("sampler")) or "none registered"
    return f"Sampler: {names} (default: the recipe's)."


def _known_frames_method(value: str) -> str:
    from vqvdm_core.long_video import KNOWN_FRAMES_METHODS

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
    fields = []
    for name, info in cls.Config.model_fields.items():  # type: ignore[attr-defined]
        annotation = info.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append({
            "name": name,
            "type": type_name,
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
                                 help="Import each component and show its Config fields."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Import each plug-in module in a child process (a few seconds) to "
                               "tell 'available' from 'broken'; --no-check lists them 'unchecked'."),
) -> None:
    """List the registered components: 'available' (imports, checked in a child process), 'loaded',
    'broken' (with the error), 'duplicate' or 'unchecked'; --verbose imports and validates each here."""
    entries = REGISTRY.try_load_all(kind) if verbose else REGISTRY.entries(kind)
    unloaded = [e for e in entries if not verbose and e.obj is None and e.error is None and e.conflict is None]
    problems = {e.target: static_problem(e.target) for e in unloaded}  # parsed from source, once each
    imported: dict[str, str | None] = {}
    if check:
        imported = REGISTRY.check_imports([e for e in unloaded if not problems[e.target]])
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
        elif e.target in problems:
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
        if "config" in row:
            lines = [f"  {f['name']}: {f['type']} = {f['default']!r}" for f in row["config"]]
            summary = summary + "\n" + "\n".join(lines)
        status = row["status"]
        table.add_row(row["kind"], row["name"], row["distribution"], summary,
                      f"[{styles[status]}]{status}[/]" if styles[status] else status)
    out.print(table)


# --------------------------------------------------------------------------------------------
# validate / run
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def validate(
    recipes: list[Path] = typer.Argument(..., help="Recipe files."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
) -> None:
    """Validate recipes, reporting every problem at once (exit 0 valid, 2 invalid)."""
    bad = 0
    for path in recipes:
        try:
            recipe = load_recipe(path, set_)
        except RecipeError as exc:
            bad += 1
            err.print(f"[red]✗[/] {exc}", highlight=False, soft_wrap=True)
            continue
        parts = ", ".join(f"{kind}={spec.name}" for _, kind, spec in recipe.components())
        out.print(f"[green]✓[/] {path}: valid ({parts})", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(2)


@app.command()
@user_errors
def run(
    recipe_path: Path = typer.Argument(..., metavar="RECIPE", help="Recipe file."),
    stage: list[str] = typer.Option([], "--stage", help=f"Run only these stages ({', '.join(STAGES)})."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps or auto."),
    force: bool = typer.Option(False, "--force", help="Overwrite stage outputs made by another recipe."),
) -> None:
    """Run a recipe's stages in order into runs/<name>/ (skipping stages already done)."""
    overrides = list(set_) + ([f"device={device}"] if device else [])
    recipe = load_recipe(recipe_path, overrides)
    from vqvdm_core.pipeline import run_recipe

    for s in stage:
        if s not in STAGES:
            raise UserError(f"unknown stage '{s}'; stages are: {', '.join(STAGES)}")
    run_recipe(recipe, stages=stage or None, force=force, console=out)


@app.command()
@user_errors
def sample(
    run_or_ckpt: Path = typer.Argument(..., metavar="RUN_OR_CKPT",
                                       help="A run directory, or a file inside one."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Clips per (label, fps) pair."),
    label: list[int] = typer.Option([], "--label", "-l", help="Class index (repeatable; default all)."),
    fps: list[float] = typer.Option([], "--fps", help="FPS value (repeatable; default the data's).",
                                    callback=_fps_values),
    guidance: Optional[float] = typer.Option(None, "--guidance", "-w", help="Guidance scale w.",
                                             callback=_finite),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="Sampling steps (respaced; default: the recipe's sample.steps)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help=_sampler_help(),
                                          callback=_check_sampler),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    out_path: Path = typer.Option(Path("samples.mp4"), "--out", "-o",
                                  help="Grid video (.mp4 or .gif); the other format is written beside it."),
    device: Optional[str] = typer.Option(None, "--device"),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 autocast."),
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
        2.0, "--reconstruction-weight", min=0.0, callback=_finite,
        help="Reconstruction guidance weight w_r (with --known-frames reconstruction)."),
    known_guidance: Optional[float] = typer.Option(
        None, "--known-guidance", min=0.0, callback=_finite,
        help="Guidance scale on the known frames (history guidance) for a denoiser trained with "
        "known_frames: 1 = off; default: the recipe's sample.known_guidance."),
) -> None:
    """Generate a grid of clips from a trained run (MP4 and GIF); long clips with --frames, continue a
    given clip with --context."""
    import torch

    from vqvdm_core.pipeline import open_run
    from vqvdm_core.pipeline.conditions import grid
    from vqvdm_core.pipeline.context_clip import load_context, mark_generated
    from vqvdm_core.pipeline.generate import generate
    from vqvdm_core.pipeline.samples_file import save_samples
    from vqvdm_core.video_io import write_grid

    if context is None and context_frames is not None:
        raise typer.BadParameter("--context-frames needs --context", param_hint="--context-frames")
    ctx = open_run(run_or_ckpt, [f"device={device}"] if device else [], console=out)
    meta = ctx.latents_meta()
    system = ctx.system(trained=True)
    clip_frames = system.clip_shape[0]
    given = None
    if context is not None:
        k = context_frames or clip_frames // 2
        clip = load_context(context, ctx, context_frames=k, max_frames=max(frames or clip_frames, k))
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
    _check_writable(out_path)
    built = system.resolve_sampler(sampler if sampler is not None else ctx.recipe.sample.sampler)
    video = torch.cat([v for _, v in generate(
        system, conditions, batch_size=batch_size, steps=steps or ctx.recipe.sample.steps, sampler=built,
        guidance_scale=guidance, seed=seed, device=ctx.device, precision=precision, console=out,
        frames=frames, context=given, overlap=overlap, known_frames=known_frames,
        reconstruction_weight=reconstruction_weight,
        known_guidance=known_guidance if known_guidance is not None else ctx.recipe.sample.known_guidance)])
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
    targets = {out_path, out_path.with_suffix(".gif" if out_path.suffix == ".mp4" else ".mp4")}
    for target in sorted(targets):
        write_grid(shown, target, fps=max(conditions.fps) or 8.0, nrow=nrow, labels=captions)
        out.print(f"wrote {target}")
    clips = out_path.with_suffix(".safetensors")
    save_samples(clips, video, conditions.labels, conditions.fps)
    out.print(f"wrote {clips} (every clip with its conditions, for `vqvdm evaluate`)")


def _check_writable(path: Path) -> None:
    """Refuse an output path whose folder cannot take it, before any sampling."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name such as {path / 'samples.mp4'}")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: the folder {existing} is not writable")


@app.command()
@user_errors
def evaluate(
    target: Path = typer.Argument(..., metavar="RUN_OR_SAMPLES",
                                  help="A run directory, or a samples.safetensors file inside one."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated metric names (default: the recipe's)."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", min=1),
    guidance: list[float] = typer.Option([], "--guidance", "-w", help="Guidance scale (repeatable).",
                                         callback=_finite),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps (respaced)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help=_sampler_help(),
                                          callback=_check_sampler),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override: dotted.path=value (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device"),
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
    from vqvdm_core.pipeline import open_run
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
    ctx = open_run(target, overrides, console=out)
    if out_path is not None:
        _check_writable(out_path)
    if target.is_file():
        written = out_path or target.with_name(f"{target.stem}.metrics.json")
        evaluate_stage.score_samples(ctx, target, written)
    else:
        key = ctx.recipe.hash("evaluate", "guidance", "data.val", "sample.fps")[:8]
        written = out_path or ctx.run.stage_dir("evaluate") / f"metrics-{key}.json"
        with ctx.run.lock("vqvdm evaluate"):
            evaluate_stage.run(ctx, out=written)
    out.print(f"wrote {written}")


@app.command()
@user_errors
def report(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory.")) -> None:
    """Regenerate <run>/report.html from what the run has produced."""
    from vqvdm_core.report import build_report

    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no recipe.yaml)")
    out.print(f"wrote {build_report(run_dir)}")


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
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps or auto."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16 only where a probe finds it faster), fp32, bf16, fp16."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="torch CPU threads (default: torch's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
) -> None:
    """Time sampling of the recipe's latent system against pixel space (the paper's Table 3)."""
    from vqvdm_core.bench import print_report, run_bench

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"unknown precision '{precision}'; use auto, fp32, bf16 or fp16")
    recipe = load_recipe(recipe_path, set_)
    report = run_bench(recipe, steps=steps, repeats=repeats, pixel_steps=min(pixel_steps, steps),
                       pixel_size=pixel_size, clips=num, device=device, precision=precision,
                       seed=seed, threads=threads, overrides=set_,
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

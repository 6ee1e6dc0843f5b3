"""``vqvdm bench``: the paper's sampling-time comparison (Table 3), measured in one process.

Table 3 of the paper: 100 sampling steps take 3.95 s for VQ-VDM at 16x128x128 and 35.26 s for
pixel-space VDM at 16x64x64, 8.9x faster. :func:`run_bench` times, in one process and one run,

* the recipe's **latent** system: every denoiser step of a ``steps``-step chain (guided, so the
  denoiser runs on the conditional and unconditional halves as one batch) plus the tokenizer's
  decode to pixels;
* the **pixel** system: the same recipe with the pixel-space tokenizer (the registered one whose
  class sets ``VideoTokenizer.pixel_space``, or ``pixel_tokenizer``; the denoiser configuration
  unchanged, its ``in_channels`` rewired to RGB) at the paper's pixel-space resolution. Its steps
  are far dearer, so only ``pixel_steps`` of them are timed and the total is extrapolated as
  ``steps x median step time + decode``; the report says so.

Weights are random (timing does not depend on them). Besides times (median and spread over
``repeats``) the report has FLOPs per step and per decode (``torch.utils.flop_counter``, with the
CPU flash-attention kernel counted too), the achieved FLOP/s next to a matmul measured in the same
run, and the peak memory of a timed pass (steps and decode). Latent and pixel repeats are interleaved,
so a change in machine load hits both; the load average is recorded. The measuring tools are in
:mod:`vqvdm_core.profiling.measure` (re-exported here); the clip shape and class count come from the data set
(:func:`clip_settings`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vqvdm_core.errors import RecipeError, UserError
from vqvdm_core.profiling.measure import (  # re-exported: ``from vqvdm_core.profiling.table3 import count_flops`` works
    PeakMemory,
    SamplingTimer,
    Spread,
    count_flops,
    load_average,
    matmul_flops_per_second,
    peak_memory,
    precision_probe,
)
from vqvdm_core.recipe import Recipe, load_recipe
from vqvdm_core.runtime.devices import resolve_device

__all__ = [
    "PAPER_TABLE3",
    "BenchReport",
    "SystemTiming",
    "clip_settings",
    "pixel_recipe",
    "pixel_space_tokenizer",
    "run_bench",
    # the toolkit's names, re-exported from vqvdm_core.profiling.measure
    "PeakMemory",
    "SamplingTimer",
    "Spread",
    "count_flops",
    "matmul_flops_per_second",
    "peak_memory",
    "precision_probe",
]

PAPER_TABLE3 = {"latent_seconds": 3.95, "latent_std": 0.01, "latent_resolution": "16x128x128",
                "pixel_seconds": 35.26, "pixel_std": 2.43, "pixel_resolution": "16x64x64",
                "speedup": 35.26 / 3.95, "steps": 100}
"""The paper's Table 3 (100-step sampling time, mean +- std of ten runs, one GPU)."""


# --------------------------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------------------------


def _data_config(recipe: Recipe) -> Any:
    try:
        return recipe.data.train.config
    except RuntimeError:  # not resolved: validate it now
        return recipe.data.train.resolve("dataset")


def clip_settings(recipe: Recipe) -> tuple[tuple[int, int, int], int]:
    """``(frames, height, width)`` and the class count of the recipe's training data.

    Asked of the data set's class first (:meth:`VideoDataset.clip_shape_of` and
    :meth:`VideoDataset.num_classes_of`, from its config, no file opened); a data set that cannot
    tell from its config is built and asked (:attr:`VideoDataset.clip_shape`, ``num_classes``).
    A data set that gives no class count from its config gets 1 class: the count only sizes the
    class-embedding table, which costs no time.
    """
    from vqvdm_core.registry import REGISTRY

    config = _data_config(recipe)
    cls = REGISTRY.load("dataset", recipe.data.train.name)
    shape = cls.clip_shape_of(config)
    num_classes = cls.num_classes_of(config)
    if shape is None:
        dataset = cls(config)
        shape, num_classes = dataset.clip_shape, dataset.num_classes
    frames, height, width = (int(v) for v in shape)
    return (frames, height, width), int(num_classes) if num_classes else 1


def pixel_space_tokenizer() -> str:
    """Name of the registered tokenizer whose class declares ``pixel_space`` (its latent is the
    video itself); exactly one must, unless ``vqvdm bench --pixel-tokenizer`` names it."""
    from vqvdm_core.registry import REGISTRY

    found = []
    for entry in REGISTRY.try_load_all("tokenizer"):
        if entry.obj is not None and getattr(entry.obj, "pixel_space", False):
            found.append(entry.name)
    if len(found) != 1:
        which = "none is installed" if not found else f"several are: {', '.join(found)}"
        raise UserError(f"vqvdm bench needs one pixel-space tokenizer (a VideoTokenizer with "
                        f"pixel_space = True) and {which}; name one with --pixel-tokenizer")
    return found[0]


def pixel_recipe(recipe: Recipe, tokenizer: str | None = None) -> Recipe:
    """The same recipe with a pixel-space tokenizer (``tokenizer``, or the one registered as such,
    see :func:`pixel_space_tokenizer`): the denoiser runs on RGB pixels."""
    data = recipe.dump()
    data["tokenizer"] = {"name": tokenizer or pixel_space_tokenizer()}
    data["denoiser"] = {k: v for k, v in data["denoiser"].items() if k != "in_channels"}
    return load_recipe(data)


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------
# What was measured of one system
# --------------------------------------------------------------------------------------------


@dataclass
class SystemTiming:
    """What was measured for one system (``latent`` or ``pixel``)."""

    name: str
    clip_shape: tuple[int, int, int]
    diffusion_shape: tuple[int, ...]
    """``(c, t, h, w)`` the denoiser runs on (the latent, or the pixels in pixel space)."""
    tokenizer: str
    denoiser: str
    tokenizer_config: dict[str, Any]
    denoiser_config: dict[str, Any]
    denoiser_parameters: int
    tokenizer_parameters: int
    denoiser_batch: int
    """Batch the denoiser sees per step (2 x clips under classifier-free guidance)."""
    steps: int
    timed_steps: int
    extrapolated: bool
    step_seconds: Spread
    decode_seconds: Spread
    total_seconds: Spread
    """Per repeat: measured (``timed_steps == steps``) or ``steps x median step + decode``."""
    flops_per_step: int
    flops_decode: int
    step_flops_per_second: float
    decode_flops_per_second: float | None
    peak_memory_bytes: int | None
    """Of the first timed pass (every timed step and the decode), above the memory in use before."""
    peak_memory_method: str
    note: str = ""


def _config_of(component: Any) -> dict[str, Any]:
    config = getattr(component, "config", None)
    return config.model_dump(mode="json") if config is not None else {}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class BenchReport:
    """Everything ``vqvdm bench`` measured; ``to_dict()`` is what ``--json`` prints."""

    recipe: str
    device: str
    precision: str
    threads: int
    load_average: dict[str, list[float] | None]
    steps: int
    repeats: int
    clips: int
    matmul_flops_per_second: float
    """Median of a 1024^3 fp32 matmul timed before the run and before every timed pass."""
    matmul_flops_per_second_spread: Spread
    precision_probe: dict[str, Any]
    latent: SystemTiming
    pixel: SystemTiming
    speedup: float
    """Pixel total / latent total (medians)."""
    speedup_spread: Spread
    """Of the per-repeat ratios (the repeats are interleaved)."""
    paper: dict[str, Any] = field(default_factory=lambda: dict(PAPER_TABLE3))
    overrides: list[str] = field(default_factory=list)
    torch_version: str = torch.__version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_bench(recipe: Recipe, *, steps: int = 100, repeats: int = 1, pixel_steps: int = 2,
              pixel_size: int | None = None, clips: int = 1, device: str | None = None,
              precision: str = "auto", seed: int = 0, threads: int | None = None,
              overrides: Sequence[str] = (), pixel_tokenizer: str | None = None,
              say: Callable[[str], None] = lambda message: None) -> BenchReport:
    """Time the recipe's latent system against its pixel-space twin (see the module docstring).

    ``pixel_size``: frame size of the pixel system (default half the recipe's, as Table 3 pairs
    128x128 latent-space with 64x64 pixel-space clips). ``precision``: ``auto`` uses bf16
    autocast only where :func:`precision_probe` finds it faster, else fp32. ``threads`` sets
    ``torch.set_num_threads`` for the run (restored afterwards). ``pixel_tokenizer``: the
    tokenizer of the pixel system (default: :func:`pixel_space_tokenizer`). ``say`` receives
    progress lines.
    """
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    from vqvdm_core.runtime.backend_policy import backend_policy

    r = recipe.runtime  # TF32 and cuDNN autotuning as the recipe's runs use them
    try:
        with backend_policy(tf32=r.tf32, cudnn_benchmark=r.cudnn_benchmark, deterministic=r.deterministic):
            return _run_bench(recipe, steps=steps, repeats=repeats, pixel_steps=pixel_steps,
                              pixel_size=pixel_size, clips=clips, device=device, precision=precision,
                              seed=seed, overrides=overrides, pixel_tokenizer=pixel_tokenizer, say=say)
    finally:
        torch.set_num_threads(before)


def _run_bench(recipe: Recipe, *, steps: int, repeats: int, pixel_steps: int, pixel_size: int | None,
               clips: int, device: str | None, precision: str, seed: int, overrides: Sequence[str],
               pixel_tokenizer: str | None, say: Callable[[str], None]) -> BenchReport:
    from vqvdm_core.system import build_system

    if steps < 1 or repeats < 1 or clips < 1:
        raise UserError("--steps, --repeats and --num must be at least 1")
    if not 1 <= pixel_steps <= steps:
        raise UserError(f"--pixel-steps must be between 1 and --steps ({steps}), got {pixel_steps}")
    dev = resolve_device(device or recipe.device)
    load_start = load_average()
    say(f"device {dev}, {torch.get_num_threads()} threads, load average {load_start}")

    clip_shape, num_classes = clip_settings(recipe)
    frames, height, width = clip_shape
    pixel_clip = ((frames, pixel_size, pixel_size) if pixel_size is not None
                  else (frames, max(1, height // 2), max(1, width // 2)))
    fps = float(recipe.sample.fps[0]) if recipe.sample.fps else 25.0
    torch.manual_seed(seed)

    systems: dict[str, Any] = {}
    specs = {"latent": (recipe, clip_shape, steps), "pixel": (pixel_recipe(recipe, pixel_tokenizer), pixel_clip, pixel_steps)}
    for name, (rec, shape, _) in specs.items():
        try:
            system = build_system(rec, num_classes=num_classes, clip_shape=shape)
        except RecipeError:
            raise
        except UserError as exc:
            wrapped = UserError(f"building the {name} system: {exc}\n(vqvdm bench only samples: a "
                                "setting used only in training can be switched off with --set)")
            wrapped.exit_code = exc.exit_code
            raise wrapped from None
        systems[name] = (rec, system.to(dev).eval())

    probe = precision_probe(dev)
    if precision == "auto":
        precision = "bf16" if probe["bf16_faster"] else "fp32"
        say(f"precision auto -> {precision}: conv3d probe fp32 {probe['fp32_ms']:.2f} ms, "
            f"bf16 {probe['bf16_ms']:.2f} ms ({probe['bf16_over_fp32']:.1f}x)")
    runners = {name: SamplingTimer(name, system, num=clips, steps=steps, timed_steps=specs[name][2],
                                   device=dev, precision=precision, seed=seed, fps=fps)
               for name, (_, system) in systems.items()}

    probes = {}
    for name, runner in runners.items():
        say(f"{name}: counting the FLOPs of one step and of the decode (also the warm-up)")
        probes[name] = runner.probe()

    ratios = []
    memory: dict[str, PeakMemory] = {}
    matmul = [matmul_flops_per_second(dev, seconds=0.3)]
    for r in range(repeats):
        for name, runner in runners.items():
            matmul.append(matmul_flops_per_second(dev, seconds=0.3))  # next to every timed pass
            say(f"{name}: repeat {r + 1}/{repeats}, timing {runner.timed_steps} of {steps} steps + decode")
            measured = runner.time_once()
            memory.setdefault(name, measured)  # the first timed pass (after the warm-up)
            say(f"{name}: {runner.totals[-1]:.2f} s" + (" (extrapolated)" if runner.timed_steps != steps else ""))
        ratios.append(runners["pixel"].totals[-1] / runners["latent"].totals[-1])

    timings = {}
    for name, runner in runners.items():
        rec, system = systems[name]
        step_flops, decode_flops = probes[name]
        step = Spread.of(runner.step_times)
        decode = Spread.of(runner.decode_times)
        note = (f"timed {runner.timed_steps} of {steps} steps, per-step median x {steps} + decode"
                if runner.timed_steps != steps else f"all {steps} steps + decode timed")
        timings[name] = SystemTiming(
            name=name, clip_shape=specs[name][1], diffusion_shape=tuple(system.latent_shape),
            tokenizer=rec.tokenizer.name, denoiser=rec.denoiser.name,
            tokenizer_config=_config_of(system.tokenizer), denoiser_config=_config_of(system.denoiser),
            denoiser_parameters=_parameters(system.denoiser),
            tokenizer_parameters=_parameters(system.tokenizer),
            denoiser_batch=clips * (2 if runner.guided else 1),
            steps=steps, timed_steps=runner.timed_steps, extrapolated=runner.timed_steps != steps,
            step_seconds=step, decode_seconds=decode, total_seconds=Spread.of(runner.totals),
            flops_per_step=int(step_flops), flops_decode=int(decode_flops),
            step_flops_per_second=step_flops / step.median if step.median > 0 else 0.0,
            decode_flops_per_second=(decode_flops / decode.median if decode_flops and decode.median > 0
                                     else None),
            peak_memory_bytes=memory[name].bytes, peak_memory_method=memory[name].method, note=note)

    latent, pixel = timings["latent"], timings["pixel"]
    return BenchReport(
        recipe=str(recipe.source or recipe.name), device=str(dev), precision=precision,
        threads=torch.get_num_threads(), load_average={"start": load_start, "end": load_average()},
        steps=steps, repeats=repeats, clips=clips, matmul_flops_per_second=statistics.median(matmul),
        matmul_flops_per_second_spread=Spread.of(matmul),
        precision_probe=probe, latent=latent, pixel=pixel,
        speedup=pixel.total_seconds.median / latent.total_seconds.median,
        speedup_spread=Spread.of(ratios), overrides=list(overrides))


# --------------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------------


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def format_report(report: BenchReport) -> list[tuple[str, str, str]]:
    """Rows ``(quantity, latent, pixel)`` of the printed table."""
    lat, pix = report.latent, report.pixel

    def total(t: SystemTiming) -> str:
        s = t.total_seconds
        text = f"{s.median:.2f} s (min {s.min:.2f}, max {s.max:.2f}, n={s.n})"
        return text + (" extrapolated" if t.extrapolated else "")

    def flops(t: SystemTiming) -> str:
        share = t.step_flops_per_second / report.matmul_flops_per_second
        return f"{t.step_flops_per_second / 1e9:.1f} GFLOP/s ({share:.0%} of matmul)"

    def decode_rate(t: SystemTiming) -> str:
        if t.decode_flops_per_second is None:
            return "-"
        return f"{t.decode_flops_per_second / 1e9:.1f} GFLOP/s"

    return [
        ("clip", _shape(lat.clip_shape), _shape(pix.clip_shape)),
        ("denoiser input (c,t,h,w)", _shape(lat.diffusion_shape), _shape(pix.diffusion_shape)),
        ("tokenizer (params)", f"{lat.tokenizer} ({lat.tokenizer_parameters / 1e6:.1f} M)",
         f"{pix.tokenizer} ({pix.tokenizer_parameters / 1e6:.1f} M)"),
        ("denoiser (params)", f"{lat.denoiser} ({lat.denoiser_parameters / 1e6:.1f} M)",
         f"{pix.denoiser} ({pix.denoiser_parameters / 1e6:.1f} M)"),
        ("denoiser batch", str(lat.denoiser_batch), str(pix.denoiser_batch)),
        (f"{report.steps} steps + decode", total(lat), total(pix)),
        ("step time (median)", f"{lat.step_seconds.median * 1e3:.1f} ms", f"{pix.step_seconds.median * 1e3:.1f} ms"),
        ("decode time (median)", f"{lat.decode_seconds.median * 1e3:.1f} ms",
         f"{pix.decode_seconds.median * 1e3:.1f} ms"),
        ("FLOPs per step", f"{lat.flops_per_step / 1e9:.2f} G", f"{pix.flops_per_step / 1e9:.2f} G"),
        ("FLOPs per decode", f"{lat.flops_decode / 1e9:.2f} G", f"{pix.flops_decode / 1e9:.2f} G"),
        ("achieved (steps)", flops(lat), flops(pix)),
        ("achieved (decode)", decode_rate(lat), decode_rate(pix)),
        ("peak memory", _gib(lat.peak_memory_bytes), _gib(pix.peak_memory_bytes)),
    ]


def summary_lines(report: BenchReport) -> list[str]:
    """The lines printed under the table: the ratio, the paper's, and the measuring conditions."""
    p = report.paper
    probe = report.precision_probe
    spread = report.speedup_spread
    notes = [f"{t.name}: {t.note}" + (" (extrapolated)" if t.extrapolated else "")
             for t in (report.latent, report.pixel)]
    return [
        *notes,
        f"latent system {report.speedup:.1f}x faster than pixel space "
        f"(per-repeat ratios min {spread.min:.1f}, max {spread.max:.1f}); paper Table 3: "
        f"{p['pixel_seconds']} s / {p['latent_seconds']} s = {p['speedup']:.1f}x",
        f"precision {report.precision}; conv3d probe fp32 {probe['fp32_ms']:.2f} ms, bf16 autocast "
        f"{probe['bf16_ms']:.2f} ms ({probe['bf16_over_fp32']:.1f}x)"
        + (f", native bf16: {probe['cpu_native_bf16']}" if "cpu_native_bf16" in probe else ""),
        f"{report.device}, threads: {report.threads}, matmul {report.matmul_flops_per_second / 1e9:.1f} "
        f"GFLOP/s, load average {report.load_average['start']} -> {report.load_average['end']}, "
        f"torch {report.torch_version}",
        f"peak memory: {report.latent.peak_memory_method}",
    ]


def print_report(report: BenchReport, console: Any) -> None:
    """A rich table of :func:`format_report` and :func:`summary_lines`."""
    from rich.table import Table

    table = Table(title=f"vqvdm bench: {report.recipe} ({report.clips} clip, {report.steps} steps)")
    table.add_column("", no_wrap=True)
    table.add_column("latent (recipe)", overflow="fold")
    table.add_column(f"pixel ({report.pixel.tokenizer} tokenizer)", overflow="fold")
    for row in format_report(report):
        table.add_row(*row)
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)


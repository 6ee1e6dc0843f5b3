"""``vqvdm bench``: the paper's sampling-time comparison (Table 3), measured in one process.

Table 3 of the paper: 100 sampling steps take 3.95 s for VQ-VDM at 16x128x128 and 35.26 s for
pixel-space VDM at 16x64x64, 8.9x faster. :func:`run_bench` times, in one process and one run,

* the recipe's **latent** system: every denoiser step of a ``steps``-step chain (guided, so the
  denoiser runs on the conditional and unconditional halves as one batch) plus the tokenizer's
  decode to pixels;
* the **pixel** system: the same recipe with the ``identity`` tokenizer (the denoiser configuration
  unchanged, its ``in_channels`` rewired to RGB) at the paper's pixel-space resolution. Its steps
  are far dearer, so only ``pixel_steps`` of them are timed and the total is extrapolated as
  ``steps x median step time + decode``; the report says so.

Weights are random (timing does not depend on them). Besides times (median and spread over
``repeats``) the report has FLOPs per step and per decode (``torch.utils.flop_counter``, with the
CPU flash-attention kernel counted too), the achieved FLOP/s next to a matmul measured in the same
run, and the peak memory of a timed pass (steps and decode). Latent and pixel repeats are interleaved,
so a change in machine load hits both; the load average is recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from vqvdm_core.devices import autocast, cpu_has_native_bf16, resolve_device, synchronize
from vqvdm_core.errors import RecipeError, UserError
from vqvdm_core.recipe import Recipe, load_recipe

__all__ = [
    "PAPER_TABLE3",
    "BenchReport",
    "SamplingTimer",
    "SystemTiming",
    "count_flops",
    "matmul_flops_per_second",
    "peak_memory",
    "precision_probe",
    "run_bench",
]

PAPER_TABLE3 = {"latent_seconds": 3.95, "latent_std": 0.01, "latent_resolution": "16x128x128",
                "pixel_seconds": 35.26, "pixel_std": 2.43, "pixel_resolution": "16x64x64",
                "speedup": 35.26 / 3.95, "steps": 100}
"""The paper's Table 3 (100-step sampling time, mean +- std of ten runs, one GPU)."""


# --------------------------------------------------------------------------------------------
# Measuring: FLOPs, memory, a matmul reference, the precision probe
# --------------------------------------------------------------------------------------------


def _attention_flops(query_shape: Sequence[int], key_shape: Sequence[int],
                     value_shape: Sequence[int], *args: Any, **kwargs: Any) -> int:
    """Forward FLOPs of softmax(q k^T) v: two matmuls, ``2 b h s_q s_k (d_qk + d_v)``."""
    *batch, s_q, d_qk = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * s_q * s_k * (d_qk + d_v)


def _attention_backward_flops(grad_shape: Sequence[int], query_shape: Sequence[int],
                              key_shape: Sequence[int], value_shape: Sequence[int],
                              *args: Any, **kwargs: Any) -> int:
    """Backward FLOPs of attention: four matmuls of the forward's sizes (dV, dP, dQ, dK)."""
    return 2 * _attention_flops(query_shape, key_shape, value_shape)


def _custom_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Kernels ``torch.utils.flop_counter`` does not count by itself (PyTorch's CPU attention)."""
    formulas: dict[Any, Callable[..., int]] = {}
    aten = torch.ops.aten
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _attention_flops),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward",
                           _attention_backward_flops)):
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = formula
    return formulas


@contextlib.contextmanager
def count_flops() -> Iterator[Callable[[], int]]:
    """``with count_flops() as total: ...`` then ``total()``: FLOPs of matmuls, convolutions and
    attention run inside (a multiply-add counts 2), as ``torch.utils.flop_counter`` counts them."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas())
    with counter:
        yield counter.get_total_flops
    # get_total_flops stays valid after the block.


def _proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` size field in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS (glibc) and reset the process's peak RSS (Linux >= 4.0)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _proc_status("VmHWM") is not None


@dataclass
class PeakMemory:
    """Result of :func:`peak_memory`: bytes above the level at the start, and how it was measured."""

    bytes: int | None = None
    method: str = "unavailable"


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """Peak memory used by the block, above what was in use when it started.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors). CPU on Linux: the process's peak resident
    set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident set at the start,
    after returning freed heap to the OS; so it includes allocator overhead but not memory held
    before the block. Elsewhere the result is ``None``.
    """
    result = PeakMemory()
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        synchronize(device)
        result.bytes = int(torch.cuda.max_memory_allocated(device) - base)
        result.method = "torch.cuda.max_memory_allocated above the start"
        return
    if device.type == "cpu" and _reset_peak_rss():
        base = _proc_status("VmRSS") or 0
        yield result
        peak = _proc_status("VmHWM")
        if peak is not None:
            result.bytes = max(0, peak - base)
            result.method = "process peak RSS (VmHWM) above the RSS at the start"
        return
    yield result


def matmul_flops_per_second(device: torch.device, *, size: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of a square fp32 matmul on ``device``: the reference for "fraction of peak"."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b  # warm-up
    synchronize(device)
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def precision_probe(device: torch.device, *, channels: int = 32) -> dict[str, Any]:
    """Time one 3x3x3 convolution (the denoiser's main cost) in fp32 and under bf16 autocast.

    Returns the best of three times of each, and ``bf16_faster``. On CPUs without native
    bfloat16 (no AVX512-BF16/AMX) PyTorch emulates it and bf16 convolutions are far slower.
    """
    conv = nn.Conv3d(channels, channels, 3, padding=(0, 1, 1)).to(device)
    x = torch.randn(2, channels, 6, 16, 16, device=device)

    def best(precision: str) -> float:
        times = []
        with torch.no_grad(), warnings_suppressed(), autocast(device, precision):
            conv(x)
            for _ in range(3):
                synchronize(device)
                start = time.perf_counter()
                conv(x)
                synchronize(device)
                times.append(time.perf_counter() - start)
        return min(times)

    fp32 = best("fp32")
    bf16 = best("bf16")
    out: dict[str, Any] = {"conv3d_shape": list(x.shape), "fp32_ms": fp32 * 1e3, "bf16_ms": bf16 * 1e3,
                           "bf16_over_fp32": bf16 / fp32, "bf16_faster": bf16 < 0.9 * fp32}
    if device.type == "cpu":
        out["cpu_native_bf16"] = cpu_has_native_bf16()
    return out


@contextlib.contextmanager
def warnings_suppressed() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------------------------


def _data_config(recipe: Recipe) -> Any:
    try:
        return recipe.data.train.config
    except RuntimeError:  # not resolved: validate it now
        return recipe.data.train.resolve("dataset")


def clip_settings(recipe: Recipe) -> tuple[tuple[int, int, int], int]:
    """``(frames, height, width)`` and the class count of the recipe's training data, read from
    the data set's config (``frames``, ``size``, ``num_classes``) without opening any file.

    A data set without a class count in its config (UCF-101 reads it from its split files) gets 1
    class: the class count only sizes the class-embedding table, which costs no time.
    """
    config = _data_config(recipe)
    frames = getattr(config, "frames", None)
    size = getattr(config, "size", None)
    if not isinstance(frames, int) or not isinstance(size, int):
        raise UserError(
            f"vqvdm bench reads the clip size from data.train's 'frames' and 'size', which the "
            f"'{recipe.data.train.name}' data set does not have; use a recipe whose data set has them")
    num_classes = getattr(config, "num_classes", None)
    return (frames, size, size), int(num_classes) if isinstance(num_classes, int) and num_classes > 0 else 1


def pixel_recipe(recipe: Recipe) -> Recipe:
    """The same recipe with the ``identity`` tokenizer: the denoiser runs on RGB pixels."""
    data = recipe.dump()
    data["tokenizer"] = {"name": "identity"}
    data["denoiser"] = {k: v for k, v in data["denoiser"].items() if k != "in_channels"}
    return load_recipe(data)


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------
# Timing one system
# --------------------------------------------------------------------------------------------


@dataclass
class Spread:
    """Median and spread of repeated measurements (seconds, or FLOP/s)."""

    median: float
    min: float
    max: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        values = list(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.median(values), min(values), max(values), std, len(values))


@dataclass
class SystemTiming:
    """What was measured for one system (``latent`` or ``pixel``)."""

    name: str
    clip_shape: tuple[int, int, int]
    diffusion_shape: tuple[int, ...]
    """``(c, t, h, w)`` the denoiser runs on (the latent, or the pixels for ``identity``)."""
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


class SamplingTimer:
    """Times sampling passes of one built system: per-step times (from the ``progress``
    callback, synchronised), the decode, and the total of each pass.

    ``timed_steps < steps``: each pass runs a ``timed_steps``-step chain and its total is
    extrapolated as ``steps x median step + decode`` (every step of a respaced chain costs the same).
    """

    def __init__(self, name: str, system: Any, *, num: int, steps: int, timed_steps: int,
                 device: torch.device, precision: str, seed: int, fps: float):
        self.name, self.system, self.num = name, system, num
        self.steps, self.timed_steps = steps, timed_steps
        self.device, self.precision, self.seed = device, precision, seed
        guided = any(getattr(c, "guided", False) for c in system.conditioners)
        self.labels = [0] * num if guided else None
        self.fps = [fps] * num if any(c.field == "fps" for c in system.conditioners) else None
        self.guided = guided and system.guidance is not None and system.guidance.scale not in (0.0, 1.0)
        self.step_times: list[float] = []
        self.decode_times: list[float] = []
        self.totals: list[float] = []

    def _sample(self, steps: int, *, decode: bool,
                progress: Callable[[int, int], None] | None = None) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        with autocast(self.device, self.precision):
            return self.system.sample(self.num, labels=self.labels, fps=self.fps, steps=steps,
                                      generator=generator, progress=progress, decode=decode)

    def probe(self) -> tuple[int, int]:
        """One step and one decode, untimed: the FLOPs of each; also the warm-up."""
        with count_flops() as step_flops:
            z = self._sample(1, decode=False)
        with count_flops() as decode_flops, autocast(self.device, self.precision), torch.no_grad():
            self.system.decode(z)
        synchronize(self.device)
        return step_flops(), decode_flops()

    def time_once(self) -> PeakMemory:
        """One timed pass: ``timed_steps`` steps and the decode; per-step times from the progress
        callback (synchronised), the decode as the rest. Returns the pass's peak memory."""
        with peak_memory(self.device) as memory:
            self._time_once()
        return memory

    def _time_once(self) -> None:
        marks: list[float] = []

        def mark(i: int, n: int) -> None:
            synchronize(self.device)
            marks.append(time.perf_counter())

        synchronize(self.device)
        start = time.perf_counter()
        self._sample(self.timed_steps, decode=True, progress=mark)
        synchronize(self.device)
        end = time.perf_counter()
        if len(marks) != self.timed_steps:
            raise RuntimeError(f"the schedule reported {len(marks)} steps, expected {self.timed_steps}")
        edges = [start, *marks]
        steps = [b - a for a, b in zip(edges, edges[1:])]
        decode = end - marks[-1]
        self.step_times.extend(steps)
        self.decode_times.append(decode)
        if self.timed_steps == self.steps:
            self.totals.append(end - start)
        else:
            self.totals.append(self.steps * statistics.median(steps) + decode)


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


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_bench(recipe: Recipe, *, steps: int = 100, repeats: int = 1, pixel_steps: int = 2,
              pixel_size: int | None = None, clips: int = 1, device: str | None = None,
              precision: str = "auto", seed: int = 0, threads: int | None = None,
              overrides: Sequence[str] = (),
              say: Callable[[str], None] = lambda message: None) -> BenchReport:
    """Time the recipe's latent system against its pixel-space twin (see the module docstring).

    ``pixel_size``: frame size of the pixel system (default half the recipe's, as Table 3 pairs
    128x128 latent-space with 64x64 pixel-space clips). ``precision``: ``auto`` uses bf16
    autocast only where :func:`precision_probe` finds it faster, else fp32. ``threads`` sets
    ``torch.set_num_threads`` for the run (restored afterwards). ``say`` receives progress lines.
    """
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        return _run_bench(recipe, steps=steps, repeats=repeats, pixel_steps=pixel_steps,
                          pixel_size=pixel_size, clips=clips, device=device, precision=precision,
                          seed=seed, overrides=overrides, say=say)
    finally:
        torch.set_num_threads(before)


def _run_bench(recipe: Recipe, *, steps: int, repeats: int, pixel_steps: int, pixel_size: int | None,
               clips: int, device: str | None, precision: str, seed: int, overrides: Sequence[str],
               say: Callable[[str], None]) -> BenchReport:
    from vqvdm_core.system import build_system

    if steps < 1 or repeats < 1 or clips < 1:
        raise UserError("--steps, --repeats and --num must be at least 1")
    if not 1 <= pixel_steps <= steps:
        raise UserError(f"--pixel-steps must be between 1 and --steps ({steps}), got {pixel_steps}")
    dev = resolve_device(device or recipe.device)
    load_start = _load_average()
    say(f"device {dev}, {torch.get_num_threads()} threads, load average {load_start}")

    clip_shape, num_classes = clip_settings(recipe)
    frames, size, _ = clip_shape
    pix = pixel_size if pixel_size is not None else max(1, size // 2)
    pixel_clip = (frames, pix, pix)
    fps = float(recipe.sample.fps[0]) if recipe.sample.fps else 25.0
    torch.manual_seed(seed)

    systems: dict[str, Any] = {}
    specs = {"latent": (recipe, clip_shape, steps), "pixel": (pixel_recipe(recipe), pixel_clip, pixel_steps)}
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
        threads=torch.get_num_threads(), load_average={"start": load_start, "end": _load_average()},
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
    table.add_column("pixel (identity tokenizer)", overflow="fold")
    for row in format_report(report):
        table.add_row(*row)
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)


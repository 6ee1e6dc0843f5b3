"""Measuring tools: FLOP counting, peak memory, a matmul reference, the precision probe, timers.

Used by ``vqvdm bench`` (:mod:`vqvdm_core.profiling.table3`, the paper's Table 3) and by the scripts in
``benchmarks/``; nothing here knows a recipe or a component by name.
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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from vqvdm_core.runtime.devices import autocast, cpu_has_native_bf16, synchronize

__all__ = [
    "PeakMemory",
    "SamplingTimer",
    "Spread",
    "count_flops",
    "load_average",
    "matmul_flops_per_second",
    "peak_memory",
    "precision_probe",
    "summary",
    "warnings_suppressed",
]


# --------------------------------------------------------------------------------------------
# FLOPs, memory, a matmul reference, the precision probe
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


PROBE_SHAPES = {"cpu": (32, (2, 32, 6, 16, 16), 1), "cuda": (256, (8, 256, 8, 32, 32), 10)}
"""``device type -> (channels, input shape, calls per timing)`` of :func:`precision_probe`. A GPU gets a
convolution of 1.7e11 FLOPs timed over 10 calls: the CPU's small one would time the kernel
launch on a GPU, where fp32 and bf16 cost the same, and ``auto`` would always pick fp32."""


def precision_probe(device: torch.device, *, channels: int | None = None) -> dict[str, Any]:
    """Time one 3x3x3 convolution (the denoiser's main cost) in fp32 and under bf16 autocast.

    Returns the best of three times of each (per call), and ``bf16_faster``. On CPUs without native
    bfloat16 (no AVX512-BF16/AMX) PyTorch emulates it and bf16 convolutions are far slower. The
    size is the device's (:data:`PROBE_SHAPES`; other devices take the CPU's).
    """
    base, shape, calls = PROBE_SHAPES.get(device.type, PROBE_SHAPES["cpu"])
    if channels is not None:
        base, shape = channels, (shape[0], channels, *shape[2:])
    conv = nn.Conv3d(base, base, 3, padding=(0, 1, 1)).to(device)
    x = torch.randn(*shape, device=device)

    def best(precision: str) -> float:
        times = []
        with torch.no_grad(), warnings_suppressed(), autocast(device, precision):
            conv(x)
            for _ in range(3):
                synchronize(device)
                start = time.perf_counter()
                for _ in range(calls):
                    conv(x)
                synchronize(device)
                times.append((time.perf_counter() - start) / calls)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------------
# Repeated measurements and the machine's conditions
# --------------------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (rounded), or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max", "n"}`` of repeated measurements."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


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


# --------------------------------------------------------------------------------------------
# Timing the sampling passes of one built system
# --------------------------------------------------------------------------------------------


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


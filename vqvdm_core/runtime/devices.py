"""Devices and mixed precision: pick a device from a recipe string, autocast, synchronize.

``resolve_device("auto")`` picks CUDA when present, then Apple's MPS, then the CPU. Under
``torchrun`` a bare ``"cuda"`` (or ``"auto"``) means this process's GPU, ``cuda:$LOCAL_RANK``.

Precision ``"bf16"`` autocasts to bfloat16 on CPU and CUDA (and MPS where torch supports it);
``"fp16"`` autocasts to float16 on CUDA only (the engine pairs it with a ``GradScaler``);
``"fp32"`` is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from vqvdm_core.errors import UserError

__all__ = [
    "DeviceError",
    "MemoryBudgetError",
    "autocast",
    "autocast_dtype",
    "available_memory",
    "check_fits",
    "check_precision",
    "cpu_has_native_bf16",
    "host_reads_are_free",
    "resolve_device",
    "synchronize",
]

PRECISIONS = ("fp32", "bf16", "fp16")


class DeviceError(UserError):
    """A device or precision this machine cannot provide."""


class MemoryBudgetError(UserError):
    """What was asked for would not fit in the memory this machine has free: refused before any work."""


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes free for new allocations on ``device``: the CPU's ``MemAvailable`` (Linux; elsewhere the
    free physical pages), a CUDA device's free memory; None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError


def check_fits(nbytes: float, *, what: str, advice: str, device: torch.device | str = "cpu",
               available: int | None = None) -> None:
    """Raise :class:`MemoryBudgetError` when ``nbytes`` (what the work will hold at once) exceeds the
    memory free on ``device`` (``available`` overrides the measurement); a no-op when it cannot be told."""
    free = available_memory(device) if available is None else available
    if free is not None and nbytes > free:
        raise MemoryBudgetError(f"{what} needs about {_size(nbytes)} of memory; {_size(free)} is free on "
                                f"{torch.device(device)}. {advice}")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` -> a :class:`torch.device` that exists here."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = spec.strip().lower()
    local_rank = os.environ.get("LOCAL_RANK")
    if text == "auto":
        if torch.cuda.is_available():
            text = "cuda"
        elif _mps_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' was asked for but Apple's MPS backend is not available "
                              "here; use device: auto or device: cpu")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{spec}' was asked for but CUDA is not available here "
                              "(no GPU or a CPU-only torch); use device: auto or device: cpu")
        if text == "cuda":
            index = int(local_rank) if local_rank is not None else torch.cuda.current_device()
        else:
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"device '{spec}' is not of the form cuda:N") from None
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise DeviceError(f"device '{spec}' does not exist: this machine has {count} CUDA "
                              f"device(s), cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``None`` for fp32)."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_precision(device: torch.device, precision: str) -> None:
    """Raise a :class:`DeviceError` when ``device`` cannot run ``precision``."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return
    kind = device.type
    if precision == "fp16" and kind != "cuda":
        raise DeviceError(f"precision fp16 needs a CUDA device (it trains with a gradient scaler); "
                          f"on {kind} use precision: bf16 or fp32")
    if precision == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 "
                              "support; use precision: fp16 or fp32")
        if kind not in ("cpu", "cuda", "mps"):
            raise DeviceError(f"precision bf16 is not supported on {kind}; use fp32")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, as oneDNN sees it).

    Without it PyTorch emulates bfloat16 and convolutions run much slower than in float32
    (measured on an AVX2 CPU: conv2d/conv3d 8-150x). Unknown builds count as native.
    """
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return True if check is None else bool(check())
    except Exception:  # noqa: BLE001 - a build without the probe: assume nothing
        return True


_warned_emulated_bf16 = False


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager[None]:
    """A context that runs its block in ``precision`` on ``device`` (no-op for fp32).

    bf16 on a CPU without native bfloat16 warns once per process: it works, but slowly.
    """
    global _warned_emulated_bf16
    device = torch.device(device)
    check_precision(device, precision)
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype is torch.bfloat16 and not _warned_emulated_bf16:
        _warned_emulated_bf16 = True
        if not cpu_has_native_bf16():
            warnings.warn(
                "precision bf16 on a CPU without native bfloat16 (no AVX512-BF16/AMX): PyTorch emulates "
                "it and convolutions run several to over a hundred times slower than in fp32. Use "
                "precision: fp32 on this machine (e.g. --set train.tokenizer.precision=fp32 "
                "--set train.denoiser.precision=fp32).", stacklevel=2)
    return torch.autocast(device_type=device.type, dtype=dtype)


def host_reads_are_free(device: torch.device | str) -> bool:
    """True where reading a tensor's value on the host (``float(t)``, ``t.item()``, ``if t.any():``)
    costs no wait: the CPU. On a GPU such a read waits for every kernel queued before it, so code on
    a training step's path takes another way there (keeps the value on the device, reads it later)."""
    return torch.device(device).type == "cpu"


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` to finish (for timing); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps" and _mps_available():
        torch.mps.synchronize()

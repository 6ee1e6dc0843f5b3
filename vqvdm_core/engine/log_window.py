"""The trainer's logging windows: the values of the steps since the previous ``metrics.jsonl``
record, averaged into the next ``train`` record (and over processes, with a check that their random
streams still agree).

:class:`WindowLogging` is mixed into :class:`~vqvdm_core.engine.trainer.Trainer`; the record format
and its writer are in :mod:`vqvdm_core.engine.logging`.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from vqvdm_core.engine.batches import InfiniteLoader
from vqvdm_core.engine.logging import MetricsLog, TrainProgress
from vqvdm_core.runtime import distributed as dist

__all__ = ["LogWindow", "WindowLogging", "as_float", "loss_means", "read_scalars", "stream_fingerprint"]


def loss_means(means: Mapping[str, float]) -> dict[str, float]:
    """``{"loss/generator": 0.1, "g_adv": 0.2}`` -> ``{"generator": 0.1}``: the losses, by group."""
    return {k[len("loss/"):]: v for k, v in means.items() if k.startswith("loss/")}


def as_float(value: Any) -> float:
    """A logged value (a number or a tensor, averaged) as a float."""
    return float(value.detach().float().mean()) if isinstance(value, Tensor) else float(value)


def read_scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every 0-dim tensor read on the host: one transfer per device for all of them
    (a component may log a CPU tensor beside the GPU's); other values as they are."""
    by_device: dict[torch.device, list[str]] = {}
    for k, v in values.items():
        if isinstance(v, Tensor):
            by_device.setdefault(v.device, []).append(k)
    read: dict[str, float] = {}
    for keys in by_device.values():
        read.update(zip(keys, torch.stack([values[k].double() for k in keys]).tolist()))
    return {k: read.get(k, v) for k, v in values.items()}


class LogWindow:
    """Running means of the values logged since the previous record."""

    def __init__(self) -> None:
        self.sums: dict[str, float | Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, values: Mapping[str, float | Tensor]) -> None:
        """Add one step's values: numbers, or float64 scalars still on the device (a trainer that does
        not synchronise every step), summed there and read once by :meth:`means`."""
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        sums = read_scalars(self.sums)
        return {k: sums[k] / self.counts[k] for k in sums}


class WindowLogging:
    """Writing a :class:`LogWindow` as a ``train`` record of a :class:`~vqvdm_core.engine.trainer.Trainer`."""

    # Set by the trainer.
    step: int
    world_size: int
    description: str
    metrics: MetricsLog
    history: list[dict[str, Any]]
    _last_lr: dict[str, float]
    _warned_streams: bool
    # and the trainer's clock, ``_elapsed() -> float``

    def _log(self, window: LogWindow, loader: InfiniteLoader, progress: TrainProgress) -> None:
        span = time.perf_counter() - window.t0
        means = self._global_means(window.means())
        record: dict[str, Any] = {
            "tag": "train", "step": self.step, "time": round(self._elapsed(), 3),  # type: ignore[attr-defined]
            "epoch": loader.position.epoch,
            "it_per_s": round(window.steps / span, 4) if span > 0 else None,
        }
        record.update({f"lr/{g}": lr for g, lr in self._last_lr.items()})
        record.update(means)
        self.metrics.write(record)
        self.history.append(record)
        progress.update(self.step, loss_means(means))

    def _global_means(self, means: dict[str, float]) -> dict[str, float]:
        """``means`` averaged over processes (the model's logged terms are each process's own; losses,
        gradient norms and rates are already the same everywhere). Also checks that the processes'
        random streams still agree, which global-batch draws rely on."""
        if self.world_size == 1:
            return means
        gathered = dist.all_gather_object((list(means), stream_fingerprint()))
        shared = [k for k in means if all(k in keys for keys, _ in gathered)]
        if shared:
            averaged = dist.all_reduce_mean(torch.tensor([means[k] for k in shared], dtype=torch.float64))
            means = {**means, **dict(zip(shared, averaged.tolist()))}
        if len({fingerprint for _, fingerprint in gathered}) > 1 and not self._warned_streams:
            self._warned_streams = True
            warnings.warn(
                f"{self.description}: the processes' random generators diverged by step {self.step}: a "
                "component draws randomness differently on different processes (use "
                "vqvdm_core.runtime.distributed.draw_for_global_batch), so this run's result depends on the "
                "number of processes", RuntimeWarning, stacklevel=2)
        return means


def stream_fingerprint() -> str:
    """A short digest of this process's CPU (and current CUDA device's) generator state."""
    digest = hashlib.blake2b(torch.get_rng_state().numpy().tobytes(), digest_size=8)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        digest.update(torch.cuda.get_rng_state().numpy().tobytes())
    return digest.hexdigest()

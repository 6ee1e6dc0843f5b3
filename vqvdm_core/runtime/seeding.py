"""Seeding and random-number-generator state: one place for everything that makes a run repeatable.

* :func:`seed_everything` seeds Python's ``random``, NumPy's global generator and torch (CPU and
  every CUDA device).
* :func:`derive_seed` turns a tuple such as ``(seed, epoch, position)`` into an independent 63-bit
  seed, so a random stream can be a pure function of where it is used.
* :func:`capture_rng_state` / :func:`restore_rng_state` save and restore all global generators in
  a form that a checkpoint can hold without pickling code (tensors, ints, floats, strings, lists).
* :func:`fork_rng` runs a block without disturbing the global generators (validation, sampling).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = [
    "capture_rng_state",
    "derive_seed",
    "fork_rng",
    "restore_rng_state",
    "seed_everything",
]

_SEED_MASK = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """A seed in ``[0, 2**63)`` that is a pure function of ``parts`` (stable across processes)."""
    blob = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") & _SEED_MASK


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (CPU and all CUDA devices)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed % (1 << 63))


def seed_cpu_generators(seed: int) -> None:
    """Seed only the CPU generators (``random``, NumPy, torch CPU); CUDA generators are untouched."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.default_generator.manual_seed(seed % (1 << 63))


def capture_rng_state(*, cuda: bool = True) -> dict[str, Any]:
    """Every global generator's state, as tensors, ints, floats, strings and lists only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), int(npy["pos"]),
                         int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        count = min(len(cuda_states), torch.cuda.device_count())
        for device, cuda_state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)


@contextmanager
def fork_rng(*, cuda: bool = True) -> Iterator[None]:
    """Run a block with the global generators restored afterwards (its draws leave no trace)."""
    state = capture_rng_state(cuda=cuda)
    try:
        yield
    finally:
        restore_rng_state(state)

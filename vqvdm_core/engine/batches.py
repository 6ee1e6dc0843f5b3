"""Infinite, resumable, rank-sharded iteration over a map-style dataset.

Everything that decides which clips a step sees, and how they are augmented, is a pure function
of ``(seed, epoch, position)``:

* Each epoch's order is ``randperm(len(dataset))`` drawn from a generator seeded with
  ``derive_seed(seed, "order", epoch)``. Global micro-batch ``j`` of the epoch is
  ``order[j*B : (j+1)*B]`` for the global batch ``B``; rank ``r`` of ``W`` takes the ``r``-th
  slice of ``B / W`` clips. Any world size sees the same global batches.
* Before ``dataset[i]`` is read, the CPU generators (``random``, NumPy, torch) are seeded with
  ``derive_seed(seed, "item", epoch, p)`` where ``p`` is the clip's place in the epoch's order.
  Random augmentation drawn from those generators is therefore the same whichever rank or worker
  reads the clip, and the same after a resume. In the main process (``num_workers=0``) the
  generators are restored afterwards, so training's own random draws are not disturbed.
* The position (``epoch``, global micro-batches consumed in it) is counted as batches are handed
  to the trainer -- not as workers prefetch them -- and is saved in checkpoints; a resumed loader
  starts from the next batch.

The last incomplete batch of an epoch is dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from vqvdm_core.errors import UserError
from vqvdm_core.runtime.seeding import derive_seed, seed_cpu_generators

__all__ = ["DataPosition", "EpochBatchSampler", "InfiniteLoader", "LoaderError", "SeededItems", "split_batch"]


class LoaderError(UserError):
    """A batch size or data set size that cannot be split as asked."""


@dataclass
class DataPosition:
    """Where iteration stands: ``epoch`` and global micro-batches already consumed in it."""

    epoch: int = 0
    batch: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}


def epoch_order(length: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The order of clip indices in ``epoch`` -- a pure function of ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "order", epoch))
    return torch.randperm(length, generator=generator)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's ``(index, item_seed)`` pairs of each global micro-batch of one epoch.

    Set :attr:`epoch` and :attr:`start` (the first global micro-batch) before iterating.
    """

    def __init__(self, length: int, *, global_batch: int, rank: int, world_size: int, seed: int):
        self.length = length
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.length // self.global_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.length, seed=self.seed, epoch=self.epoch).tolist()
        for j in range(self.start, self.batches_per_epoch):
            first = j * self.global_batch + self.rank * self.local_batch
            places = range(first, first + self.local_batch)
            yield [(order[p], derive_seed(self.seed, "item", self.epoch, p)) for p in places]


class SeededItems(Dataset):
    """``dataset[(index, item_seed)]`` reads ``dataset[index]`` with the CPU generators seeded."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, item_seed = key
        if get_worker_info() is not None:  # a worker process: its generators are its own
            seed_cpu_generators(item_seed)
            return self.dataset[index]
        saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        try:
            seed_cpu_generators(item_seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


def _seed_worker(worker_id: int, *, seed: int, rank: int, epoch: int) -> None:
    """Seed a worker's generators from ``(seed, epoch, rank, worker)`` (items reseed themselves)."""
    seed_cpu_generators(derive_seed(seed, "worker", epoch, rank, worker_id))


class _WorkerInit:
    """Picklable ``worker_init_fn`` carrying the epoch the workers were started in."""

    def __init__(self, *, seed: int, rank: int, epoch: int):
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def __call__(self, worker_id: int) -> None:
        _seed_worker(worker_id, seed=self.seed, rank=self.rank, epoch=self.epoch)


class InfiniteLoader:
    """Endless batches of ``batch_size / world_size`` clips for this rank, epoch after epoch.

    ``batch_size`` is the global micro-batch (summed over ranks). ``position`` says where to start.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        position: DataPosition | None = None,
    ):
        if batch_size % world_size:
            raise LoaderError(f"batch_size {batch_size} is the global batch and must be divisible by "
                              f"the number of processes ({world_size}); use a multiple of {world_size}")
        length = len(dataset)  # type: ignore[arg-type]
        if length < batch_size:
            raise LoaderError(f"the training set has {length} clip(s), fewer than one batch of "
                              f"{batch_size}; lower batch_size or add data")
        self.seed = seed
        self.rank = rank
        self.position = position or DataPosition()
        self.sampler = EpochBatchSampler(length, global_batch=batch_size, rank=rank,
                                         world_size=world_size, seed=seed)
        self._generator = torch.Generator()
        kwargs: dict[str, Any] = {}
        if num_workers > 0:
            kwargs.update(persistent_workers=True,
                          worker_init_fn=_WorkerInit(seed=seed, rank=rank, epoch=self.position.epoch))
        self.loader = DataLoader(SeededItems(dataset), batch_sampler=self.sampler,
                                 num_workers=num_workers, collate_fn=collate_fn,
                                 pin_memory=pin_memory, generator=self._generator, **kwargs)
        self._iterator: Iterator[Any] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Global micro-batches in one epoch."""
        return self.sampler.batches_per_epoch

    def __iter__(self) -> "InfiniteLoader":
        return self

    def __next__(self) -> Any:
        while True:
            if self.position.batch >= self.batches_per_epoch:
                self.position = DataPosition(self.position.epoch + 1, 0)
                self._iterator = None
            if self._iterator is None:
                self.sampler.epoch = self.position.epoch
                self.sampler.start = self.position.batch
                # The DataLoader draws its workers' base seed from this generator: derive it
                # from (seed, epoch, rank) so it never consumes the global generator.
                self._generator.manual_seed(derive_seed(self.seed, "loader", self.position.epoch, self.rank))
                self._iterator = iter(self.loader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.position = DataPosition(self.position.epoch + 1, 0)
                self._iterator = None
                continue
            self.position = DataPosition(self.position.epoch, self.position.batch + 1)
            return batch

    def state_dict(self) -> dict[str, int]:
        """The position to resume from."""
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (the next batch is the one after it)."""
        self.position = DataPosition(int(state["epoch"]), int(state["batch"]))
        self._iterator = None

    def close(self) -> None:
        """Stop worker processes."""
        self._iterator = None
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None  # type: ignore[attr-defined]


def split_batch(batch: Any, parts: int) -> list[Any]:
    """``batch`` as ``parts`` equal consecutive pieces along its first dimension.

    Tensors and lists are cut; mappings, namedtuples and tuples are split field by field; anything
    else (a scalar, None) is given to every piece. The batch size must be divisible by ``parts``.
    """
    if parts == 1 or (isinstance(batch, torch.Tensor) and batch.dim() == 0):
        return [batch] * parts
    if isinstance(batch, (torch.Tensor, list)):
        size = len(batch)
        if size % parts:
            raise LoaderError(f"a batch of {size} cannot be cut into {parts} equal shards")
        step = size // parts
        return [batch[i * step:(i + 1) * step] for i in range(parts)]
    if isinstance(batch, Mapping):
        fields = {k: split_batch(v, parts) for k, v in batch.items()}
        return [{k: v[i] for k, v in fields.items()} for i in range(parts)]
    if isinstance(batch, tuple):
        columns = [split_batch(v, parts) for v in batch]
        rows = [[c[i] for c in columns] for i in range(parts)]
        if hasattr(batch, "_fields"):  # a namedtuple
            return [type(batch)(*r) for r in rows]
        return [tuple(r) for r in rows]
    return [batch] * parts

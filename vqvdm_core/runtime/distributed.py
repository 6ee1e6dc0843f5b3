"""Multi-process training: the process group from ``torchrun``'s environment, and the few collectives
the engine needs.

Launched as ``torchrun --nproc_per_node N -m vqvdm_core run RECIPE`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), :func:`init_from_env` joins
the process group on the backend the run's device needs (:func:`backend_for`: NCCL for a CUDA
device, gloo for the CPU, whatever else the machine has; ``VQVDM_DIST_BACKEND`` overrides).
Launched as a plain ``python``, every function here is a no-op for a world of one process.

Every collective goes through the functions here, which move a tensor to where the backend needs
it (:func:`_comm_device`: NCCL takes CUDA tensors only) and back. A component never calls
``torch.distributed`` collectives itself. :func:`wait_for_main` is the one wait with no timeout
that matters: the other processes idle in it while rank 0 alone runs a long stage (latents,
sampling, evaluation), on a side gloo group whose timeout is days, not the main group's minutes.

The engine does not wrap models in ``DistributedDataParallel``: a model with several optimizer
groups (a GAN) runs several backward passes per forward, which DDP's reducer does not support.
Instead each group's gradients are averaged with :func:`all_reduce_gradients` right before that
group's optimizer steps -- the same average DDP computes, once per optimizer step.

**One batch, any number of processes.** While the engine runs a training step it marks the code as
computing one process's contiguous share of a global batch (:func:`global_batch_share`). Inside it,
:func:`draw_for_global_batch` makes a random draw for the whole global batch and keeps this process's
rows -- every process holds the same generator state, so sample ``i`` of the global batch gets the
same noise, time step or dropout decision whichever process holds it and however many there are --
and :func:`batch_share` / :func:`batch_sum` let a component normalise by, or pick rows from, the
global batch. Outside a training step (validation, sampling, a user's own loop) they behave as for
one process.

**Bit-identical on any number of processes: shards.** With ``train.<stage>.shards: S`` the trainer
computes each global micro-batch as ``S`` equal shards, one after another, each inside
:meth:`ShardedStep.shard` (``S / W`` of them on each of ``W`` processes, every one from the same generator
state), and sums every per-shard result in shard order with :func:`combine_shards`. One process and
``W`` processes then run the same operations on the same tensors and reach the same weights bit for
bit. Within a sharded step nothing may sum over the batch while it is being computed (the other
shards have not run yet): :func:`batch_sum` refuses, a component keeps its per-shard statistics and
combines them in a callback registered with :func:`at_step_end`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "ShardedStep",
    "all_gather_object",
    "all_reduce_gradients",
    "all_reduce_mean",
    "all_reduce_sum",
    "at_step_end",
    "backend_for",
    "barrier",
    "batch_share",
    "batch_sum",
    "broadcast_module",
    "broadcast_tensors",
    "cleanup",
    "combine_shards",
    "draw_for_global_batch",
    "draw_global",
    "global_batch_share",
    "init_from_env",
    "is_distributed",
    "is_main",
    "is_sharded",
    "local_rank",
    "local_rows",
    "rank",
    "wait_for_main",
    "world_size",
]


def backend_for(device: torch.device | str) -> str:
    """The process-group backend for processes that compute on ``device``: ``nccl`` for CUDA,
    ``gloo`` for anything else (a CPU run on a machine with GPUs stays on gloo and never touches
    them). ``VQVDM_DIST_BACKEND`` overrides; NCCL for a non-CUDA device is refused."""
    kind = torch.device(device).type
    chosen = os.environ.get("VQVDM_DIST_BACKEND") or ("nccl" if kind == "cuda" else "gloo")
    if chosen == "nccl" and kind != "cuda":
        from vqvdm_core.errors import UserError

        raise UserError(f"VQVDM_DIST_BACKEND=nccl needs a CUDA device; this run's device is {device}: "
                        "set device: cuda in the recipe or leave VQVDM_DIST_BACKEND unset (gloo)")
    return chosen


def init_from_env(*, device: torch.device | str = "auto", timeout_minutes: float | None = None) -> bool:
    """Join the process group described by ``torchrun``'s environment; True if distributed.

    ``device`` is the run's device as the recipe names it (``auto``, ``cpu``, ``cuda``, ...): it
    picks the backend (:func:`backend_for`) and, for CUDA, this process's GPU (``LOCAL_RANK``).
    ``timeout_minutes`` bounds each collective of the main group (default 30, or
    ``VQVDM_DIST_TIMEOUT_MINUTES``); rank 0's long solo stages are waited for without it
    (:func:`wait_for_main`). Idempotent. A no-op (returns False) when ``WORLD_SIZE`` is unset or 1.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from vqvdm_core.errors import UserError

    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch multi-process "
                        "training with `torchrun --nproc_per_node N ...`")
    from vqvdm_core.runtime.devices import resolve_device

    resolved = resolve_device(device)
    backend = backend_for(resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)  # cuda (no index) resolves to cuda:LOCAL_RANK
    if timeout_minutes is None:
        timeout_minutes = float(os.environ.get("VQVDM_DIST_TIMEOUT_MINUTES", "30"))
    dist.init_process_group(backend=backend, init_method="env://",
                            timeout=timedelta(minutes=timeout_minutes))
    global _WAIT_GROUP
    hours = float(os.environ.get("VQVDM_STAGE_WAIT_HOURS", "168"))
    _WAIT_GROUP = dist.new_group(backend="gloo", timeout=timedelta(hours=hours))  # every rank, in order
    return True


_WAIT_GROUP: Any = None


def wait_for_main() -> None:
    """Every process waits here until all of them arrive, with no practical timeout: the other
    processes call it while rank 0 alone runs a long piece of work (a latents, sample or evaluate
    stage, a validation), rank 0 when the work is done. The main group's collectives time out after
    ``timeout_minutes`` (a hung peer must not hang a cluster job for days); this wait runs on a
    side gloo group (CPU, no GPU kernel pending) whose timeout is ``VQVDM_STAGE_WAIT_HOURS``
    (default 168). A no-op when not distributed."""
    if not is_distributed():
        return
    if _WAIT_GROUP is None:  # a process group made by the caller, not by init_from_env
        barrier()
        return
    dist.barrier(group=_WAIT_GROUP)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 when not set)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes files and shows progress (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    global _WAIT_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _WAIT_GROUP = None


def _comm_device(tensor: Tensor) -> torch.device:
    """Where a collective on ``tensor`` must run: NCCL needs CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if tensor.device.type not in ("cpu", "cuda") else tensor.device


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The element-wise mean of ``tensor`` over processes (a new tensor; identity when alone)."""
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_comm_device(tensor), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return (work / dist.get_world_size()).to(tensor.device)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The element-wise sum of ``tensor`` over processes (a new tensor on ``tensor``'s device;
    a copy when alone)."""
    if not is_distributed():
        return tensor.clone()
    work = tensor.detach().to(_comm_device(tensor), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def all_reduce_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average ``params``' gradients over processes, as DistributedDataParallel would.

    A parameter without a gradient on some process contributes zeros there; one without a
    gradient on every process keeps ``grad = None`` (so its optimizer skips it, as it would
    when training alone). Gradients are flattened per dtype into one buffer per collective.
    """
    if not is_distributed() or not params:
        return
    world = dist.get_world_size()
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    has_grad = has_grad.to(_comm_device(params[0]))
    dist.all_reduce(has_grad, op=dist.ReduceOp.SUM)
    used = [p for p, n in zip(params, has_grad.tolist()) if n > 0]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in used:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        grads = [p.grad for p in group]
        flat = torch.cat([g.reshape(-1) for g in grads]).to(_comm_device(grads[0]))
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def broadcast_tensors(tensors: Sequence[Tensor], *, src: int = 0) -> None:
    """Copy ``tensors`` in place from process ``src`` to every process (one collective per dtype)."""
    if not is_distributed() or not tensors:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for dtype, group in by_dtype.items():
            wire = torch.uint8 if dtype == torch.bool else dtype
            flat = torch.cat([t.detach().reshape(-1).to(wire) for t in group]).to(_comm_device(group[0]))
            dist.broadcast(flat, src=src)
            offset = 0
            for t in group:
                n = t.numel()
                t.copy_(flat[offset:offset + n].view(t.shape).to(dtype))
                offset += n


def broadcast_module(module: nn.Module, *, src: int = 0, parameters: bool = True,
                     buffers: bool = True) -> None:
    """Copy ``module``'s parameters and/or buffers from process ``src`` to every process."""
    tensors: list[Tensor] = []
    if parameters:
        tensors += [p.data for p in module.parameters()]
    if buffers:
        tensors += list(module.buffers())
    broadcast_tensors(tensors, src=src)


def all_gather_object(obj: Any) -> list[Any]:
    """``obj`` from every process, by rank (``[obj]`` when alone). Pickles in memory between our
    own processes only; never used for anything read from disk."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------------------------
# One global batch shared by the processes
# --------------------------------------------------------------------------------------------

_SHARE: ContextVar[tuple[int, int]] = ContextVar("vqvdm_batch_share", default=(0, 1))
_SHARDED: ContextVar["ShardedStep | None"] = ContextVar("vqvdm_sharded_step", default=None)


@contextmanager
def global_batch_share() -> Iterator[None]:
    """Mark the block as computing this process's share of a global batch: rank ``r`` of ``W`` holds
    rows ``[r * b, (r + 1) * b)`` of a batch of ``W * b`` (the engine's loader guarantees this layout
    and the equal shares). The trainer wraps every ``training_step`` call in it."""
    token = _SHARE.set((rank(), world_size()))
    try:
        yield
    finally:
        _SHARE.reset(token)


def batch_share() -> tuple[int, int]:
    """``(index, count)``: this process's place among the processes sharing the batch being computed
    (in a sharded step: this shard's place among the shards); ``(0, 1)`` outside
    :func:`global_batch_share` / :meth:`ShardedStep.shard` or when alone."""
    return _SHARE.get()


def draw_global(draw: Callable[[int], Tensor], local_size: int) -> Tensor:
    """``draw(global_size)``: the random draw for the whole global batch of which this share holds
    ``local_size`` rows; alone (or outside a training step) ``draw(local_size)``.

    Every share calls it in the same order from the same generator state, so all of them draw the
    same global tensor. Use :func:`local_rows` for this share's rows; the whole tensor serves a
    statistic of the global batch that must not wait for the other shares (a count to normalise by).
    """
    count = batch_share()[1]
    return draw(local_size * count)


def local_rows(whole: Tensor, local_size: int) -> Tensor:
    """This share's ``local_size`` rows (dim 0) of a tensor over the global batch."""
    index = batch_share()[0]
    return whole[index * local_size:(index + 1) * local_size]


def draw_for_global_batch(draw: Callable[[int], Tensor], local_size: int) -> Tensor:
    """``draw(global_size)[this process's rows]``: a random draw for the whole global batch, of which
    this process keeps its ``local_size`` rows (dim 0).

    Every process calls it in the same order from the same generator state, so all of them draw the
    same global tensor and row ``i`` is the one a single process would draw for sample ``i``. Alone
    (or outside a training step) this is ``draw(local_size)``, the same draw as before.
    """
    return local_rows(draw_global(draw, local_size), local_size)


def batch_sum(tensor: Tensor) -> Tensor:
    """The element-wise sum of a (detached) ``tensor`` over the processes sharing the batch: the
    global batch's total of a per-share total (identity alone or outside a training step).

    Not available inside a sharded step (:class:`ShardedStep`), where the other shards are computed
    later: keep the per-shard values and combine them in an :func:`at_step_end` callback."""
    if _SHARDED.get() is not None:
        raise RuntimeError("batch_sum inside a sharded training step: the other shards of the batch have "
                           "not been computed yet; keep this shard's value and combine the shards' values "
                           "with combine_shards in a callback registered with at_step_end")
    if batch_share()[1] == 1:
        return tensor
    work = tensor.detach().to(_comm_device(tensor), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


# --------------------------------------------------------------------------------------------
# Shards: the same operations on 1 or N processes
# --------------------------------------------------------------------------------------------


class ShardedStep:
    """One training step's micro-batch computed as ``count`` equal shards (the trainer makes one).

    This process computes shards ``first .. first + per_process - 1`` (rank ``r`` of ``W``:
    ``first = r * count / W``). Components register work that needs every shard's results with
    :func:`at_step_end`; the trainer calls :meth:`finish` once all of this process's shards ran.
    """

    def __init__(self, count: int):
        world = world_size()
        if count % world:
            raise ValueError(f"{count} shards cannot be shared by {world} processes")
        self.count = count
        self.per_process = count // world
        self.first = rank() * self.per_process
        self._callbacks: dict[object, Callable[[], None]] = {}

    @contextmanager
    def shard(self, local: int) -> Iterator[int]:
        """Compute this process's ``local``-th shard: :func:`batch_share` is its global place."""
        if not 0 <= local < self.per_process:
            raise IndexError(f"shard {local} of {self.per_process} on this process")
        index = self.first + local
        share, sharded = _SHARE.set((index, self.count)), _SHARDED.set(self)
        try:
            yield index
        finally:
            _SHARDED.reset(sharded)
            _SHARE.reset(share)

    def combine(self, parts: Sequence[Tensor]) -> Tensor:
        """The sum over every shard of the step, in shard order: ``((s_0 + s_1) + s_2) + ...``.

        ``parts`` are this process's shards' tensors (same shape and dtype), in its shard order. With
        several processes each one gathers all of them, so every process adds the same tensors in the
        same order and gets the same bits as one process holding every shard.
        """
        if len(parts) != self.per_process:
            raise ValueError(f"combine got {len(parts)} parts; this process computes {self.per_process} shards")
        ordered = list(parts)
        if is_distributed():
            device = parts[0].device
            local = torch.stack([p.detach() for p in parts]).to(_comm_device(parts[0]))
            gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, local)
            ordered = [t.to(device) for block in gathered for t in block.unbind(0)]
        total = ordered[0].detach().clone()
        for part in ordered[1:]:
            total += part
        return total

    def at_end(self, key: object, callback: Callable[[], None]) -> None:
        self._callbacks.setdefault(key, callback)

    def finish(self) -> None:
        """Run the registered callbacks (once each, in registration order); every process calls it."""
        callbacks, self._callbacks = list(self._callbacks.values()), {}
        token = _SHARDED.set(self)
        try:
            for callback in callbacks:
                callback()
        finally:
            _SHARDED.reset(token)


def is_sharded() -> bool:
    """True while a sharded training step is computed (its shards or its end-of-step callbacks)."""
    return _SHARDED.get() is not None


def at_step_end(key: object, callback: Callable[[], None]) -> None:
    """In a sharded step: run ``callback`` once after every shard of the step ran (one callback per
    ``key``; every process registers the same ones). Raises outside a sharded step."""
    step = _SHARDED.get()
    if step is None:
        raise RuntimeError("at_step_end outside a sharded training step")
    step.at_end(key, callback)


def combine_shards(parts: Sequence[Tensor]) -> Tensor:
    """The sum over every shard of the current sharded step, in shard order (:meth:`ShardedStep.combine`)."""
    step = _SHARDED.get()
    if step is None:
        raise RuntimeError("combine_shards outside a sharded training step")
    return step.combine(parts)

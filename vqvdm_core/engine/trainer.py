"""The training loop every trainable component shares (the tokenizer's GAN, the denoiser).

One optimizer step, for ``grad_accum`` micro-batches ``k`` and the model's losses in the order
``TrainStep.losses`` lists them::

    clear every trained gradient
    for k in micro-batches:
        losses = model.training_step(batch_k, step=step)         # under autocast
        stop if any loss (averaged over processes) is not finite
        for group, loss in losses (in order):
            grad of (loss / grad_accum) w.r.t. *this group's* parameters only, added to .grad
            (retain_graph for all but the last loss)
            if k is the last micro-batch:
                average the group's gradients over processes
                unscale (fp16), clip, step the group's optimizer and its warm-up
    update the fp16 scaler; update the EMA

With ``shards: S`` (``settings.shards``) each micro-batch is computed as ``S`` equal shards instead
(``S / W`` of them on each of ``W`` processes), each from the generator state derived from
``(seed, step, micro-batch)``; the shards' gradients, losses and the components' end-of-step
statistics are added in shard order (:class:`vqvdm_core.runtime.distributed.ShardedStep`), so one
process and ``W`` processes run the same operations and reach the same weights bit for bit.

Gradients are taken with ``torch.autograd.grad(loss, group_params)``, so a loss only ever
reaches its own group's ``.grad``: the generator's loss flows through the discriminator without
leaving gradients on it, and each group's gradient accumulates over micro-batches untouched by
the other groups' backward passes. See ``docs/engine.md``.

Saving and resuming the training state is in :mod:`vqvdm_core.engine.resume`, the logging windows
(means since the last record, over processes) in :mod:`vqvdm_core.engine.log_window`; both are
mixed into :class:`Trainer`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import Dataset

from vqvdm_core.data.collate import collate_clips
from vqvdm_core.engine.batches import DataPosition, InfiniteLoader, LoaderError, split_batch
from vqvdm_core.engine.checkpoint import save_weights
from vqvdm_core.engine.ema import EMA
from vqvdm_core.engine.log_window import LogWindow, WindowLogging
from vqvdm_core.engine.log_window import as_float as _as_float
from vqvdm_core.engine.log_window import read_scalars
from vqvdm_core.engine.log_window import loss_means as _loss_means
from vqvdm_core.engine.log_window import stream_fingerprint as _stream_fingerprint  # noqa: F401 (old name)
from vqvdm_core.engine.logging import MetricsLog, TrainProgress
from vqvdm_core.engine.optim import build_lr_schedule, build_optimizer, trained_groups
from vqvdm_core.engine.resume import CHECKPOINT_NAME, CheckpointState
from vqvdm_core.engine.resume import _on_this_device  # noqa: F401 (old name)
from vqvdm_core.engine.resume import load_model_state as _load_model_state  # noqa: F401 (old name)
from vqvdm_core.engine.resume import model_state as _model_state
from vqvdm_core.errors import ComponentError, WorkFailure
from vqvdm_core.interfaces import TrainStep
from vqvdm_core.recipe import TrainSettings
from vqvdm_core.runtime import distributed as dist
from vqvdm_core.runtime import devices
from vqvdm_core.runtime.devices import autocast, check_precision
from vqvdm_core.runtime.seeding import derive_seed, fork_rng, seed_everything

if TYPE_CHECKING:
    from vqvdm_core.engine.loggers import LoggerSet

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer"]

METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "loss_curves.png"

Validate = Callable[[nn.Module, int], dict[str, float]]


class NonFiniteLossError(WorkFailure):
    """A loss (or gradient, or weight) became NaN or infinite; training stopped.

    ``step`` is the optimizer step, ``group`` the ``TrainStep.losses`` key (or None),
    ``terms`` the logged terms that were not finite.
    """

    def __init__(self, message: str, *, step: int, group: str | None = None,
                 terms: dict[str, float] | None = None):
        super().__init__(message)
        self.step = step
        self.group = group
        self.terms = terms or {}


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    ``history``: every record of ``metrics.jsonl`` (train and val, tagged), resumed runs included.
    ``final``: the last training record merged with the last validation results.
    """

    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _shard_mean(parts: list[dict[str, float]]) -> dict[str, float]:
    """Each logged term's mean over the shards that logged it."""
    sums: dict[str, list[float]] = {}
    for logs in parts:
        for k, v in logs.items():
            sums.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in sums.items()}


_Window = LogWindow  # the old name


class Trainer(CheckpointState, WindowLogging):
    """Trains one :class:`~vqvdm_core.interfaces.Trainable` module with a stage's :class:`TrainSettings`.

    ``out_dir`` receives ``checkpoints/last.pt``, ``metrics.jsonl`` and ``loss_curves.png``.
    ``validate(model, step) -> {name: value}`` runs on rank 0 every ``val_every`` steps and at the
    end, with EMA weights swapped in when EMA is on, in eval mode under ``torch.no_grad``; its
    random draws do not disturb training's. ``compile_backend`` is passed to ``torch.compile``
    when ``settings.compile`` is on. ``loggers`` (experiment trackers) receive every record of
    ``metrics.jsonl``, tagged with ``description`` as the stage (rank 0 only).
    """

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        *,
        out_dir: str | Path,
        device: torch.device | str = "cpu",
        seed: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        validate: Validate | None = None,
        description: str = "train",
        console: Console | None = None,
        compile_backend: str | Callable[..., Any] = "inductor",
        loggers: "LoggerSet | None" = None,
    ):
        name = type(model).__name__
        if not (isinstance(model, nn.Module) and callable(getattr(model, "optimizer_groups", None))
                and callable(getattr(model, "training_step", None))):
            raise ComponentError(f"{name} cannot be trained: it must be an nn.Module implementing "
                                 "vqvdm_core.interfaces.Trainable (optimizer_groups, training_step)")
        dist.init_from_env(device=device)
        self.rank = dist.rank()
        self.world_size = dist.world_size()
        self.is_main = self.rank == 0
        if settings.batch_size % self.world_size:
            raise LoaderError(f"batch_size {settings.batch_size} is the global batch and must be divisible "
                              f"by the number of processes ({self.world_size})")
        if settings.shards is not None and settings.shards % self.world_size:
            raise LoaderError(f"shards {settings.shards} must be divisible by the number of processes "
                              f"({self.world_size}): each process computes the same number of shards")
        self.device = torch.device(device)
        check_precision(self.device, settings.precision)
        self.settings = settings
        self.seed = int(seed)
        self.description = description
        self.validate = validate
        self.collate_fn = collate_fn or collate_clips
        self.console = console or Console()
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoints" / CHECKPOINT_NAME
        self.metrics = MetricsLog(self.out_dir / METRICS_NAME, enabled=self.is_main, loggers=loggers,
                                  stage=description)

        self.model = model.to(self.device)
        dist.broadcast_module(self.model)  # every process starts from rank 0's weights
        self.groups = trained_groups(model.optimizer_groups(), settings, model_name=name)
        self.optimizers = {g: build_optimizer(ps, settings.optimizer_for(g)) for g, ps in self.groups.items()}
        self.schedulers = {g: build_lr_schedule(opt, settings.optimizer_for(g), total_steps=settings.steps)
                           for g, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler("cuda") if settings.precision == "fp16" else None
        trained = [p for ps in self.groups.values() for p in ps]
        self.ema = EMA(model, decay=settings.ema_decay, params=trained) if settings.ema_decay else None
        self._step_fn: Callable[..., Any] = model.training_step
        if settings.compile:
            self._step_fn = torch.compile(model.training_step, backend=compile_backend)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._elapsed_before = 0.0
        self._t_start = time.perf_counter()
        self._position = DataPosition()
        self._last_lr: dict[str, float] = {}
        self._grad_norms: dict[str, float | Tensor] = {}
        self._last_saved_step: int | None = None
        self._warned_streams = False
        # Losses and gradient norms are checked for NaN/inf every step, or (no host synchronisation per
        # step) kept on the device here and checked at the next log step, checkpoint or validation.
        mode = settings.check_finite or ("step" if devices.host_reads_are_free(self.device) else "log")
        self._defer_checks = mode == "log"
        self._pending_checks: dict[int, dict[str, Any]] = {}

    # -- public API --------------------------------------------------------------------------

    def fit(self, dataset: Dataset) -> TrainResult:
        """Train to ``settings.steps`` optimizer steps, resuming from the last checkpoint if any."""
        self._t_start = time.perf_counter()
        resumed = self._resume()
        self.history = self.metrics.truncate_after(self.step)
        if self.step >= self.settings.steps:
            dist.barrier()
            return self._result()
        if not resumed:
            # The same stream on every process: random draws are made for the global batch and each
            # process keeps its rows (vqvdm_core.runtime.distributed.draw_for_global_batch).
            seed_everything(self.seed)
        dist.broadcast_module(self.model)

        s = self.settings
        loader = InfiniteLoader(
            dataset, batch_size=s.batch_size, seed=self.seed, rank=self.rank, world_size=self.world_size,
            num_workers=s.num_workers, collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda", position=self._position,
        )
        progress = TrainProgress(self.console, description=self.description, total=s.steps,
                                 start=self.step, enabled=self.is_main)
        window = LogWindow()
        try:
            with progress:
                if resumed:
                    progress.message(f"{self.description}: resumed from step {self.step} "
                                     f"({self.checkpoint_path})")
                while self.step < s.steps:
                    values = self._optimizer_step(loader)
                    self.step += 1
                    window.add(values)
                    window.steps += 1
                    progress.advance(self.step)
                    last = self.step == s.steps
                    if self.step % s.log_every == 0 or last:
                        self._flush_checks()
                        self._log(window, loader, progress)
                        window = LogWindow()
                    else:
                        progress.tick(self.step, lambda: _loss_means(window.means()))
                    if self.validate is not None and (self.step % s.val_every == 0 or last):
                        self._run_validation(progress)
                        dist.wait_for_main()  # rank 0 validates alone; the rest wait without a timeout
                    if self.step % s.ckpt_every == 0 or last:
                        self._position = loader.position
                        self._save_checkpoint()
        finally:
            loader.close()
        if self.is_main:
            from vqvdm_core.reporting.plots import plot_loss_curves

            plot_loss_curves(self.history, self.out_dir / CURVES_NAME, title=self.description)
        dist.barrier()
        return self._result()

    def ema_model(self) -> nn.Module:
        """A copy of the model with the EMA weights, or the model itself when EMA is off."""
        return self.ema.averaged_copy(self.model) if self.ema is not None else self.model

    def export_weights(self, path: str | Path, *, ema: bool = True) -> Path:
        """Write the model's weights (EMA ones when ``ema`` and EMA is on) as safetensors (rank 0)."""
        path = Path(path)
        use_ema = ema and self.ema is not None
        if self.is_main:
            swap = self.ema.swapped_in(self.model) if use_ema else contextlib.nullcontext()  # type: ignore[union-attr]
            with swap:
                save_weights(_model_state(self.model), path,
                             metadata={"step": str(self.step), "ema": str(use_ema).lower()})
        dist.barrier()
        return path

    # -- one optimizer step ------------------------------------------------------------------

    def _optimizer_step(self, loader: Iterator[Any]) -> dict[str, float]:
        accum = self.settings.grad_accum
        for params in self.groups.values():
            for p in params:
                p.grad = None
        self._grad_norms = {}
        loss_sums: dict[str, float] = {}
        log_sums: dict[str, float] = {}
        keys: list[str] | None = None
        for micro in range(accum):
            batch = _to_device(next(loader), self.device)
            if self.settings.shards is not None:
                keys, values, logs = self._sharded_micro_batch(batch, micro, keys)
                if micro == accum - 1:
                    for group in keys:
                        self._step_group(group, averaged=True)
            else:
                with autocast(self.device, self.settings.precision), dist.global_batch_share():
                    out = self._step_fn(batch, step=self.step)
                losses, logs = self._check_output(out)
                keys = self._same_keys(keys, losses)
                values = self._finite_losses(losses, logs)
                last_micro = micro == accum - 1
                items = list(losses.items())
                for i, (group, loss) in enumerate(items):
                    self._accumulate(group, loss / accum, retain_graph=i < len(items) - 1)
                    if last_micro:
                        self._step_group(group)
            for k, v in values.items():
                loss_sums[k] = loss_sums.get(k, 0.0) + v / accum
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0.0) + v / accum
        if self.scaler is not None:
            self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        if self.world_size > 1:
            # Like DDP's broadcast_buffers, rank 0's buffers (running statistics, EMA codebooks)
            # are authoritative -- for modules in train mode only: a frozen part in eval mode
            # (the tokenizer inside the denoiser stage) does not change its buffers.
            dist.broadcast_tensors([b for m in self.model.modules() if m.training
                                    for b in m.buffers(recurse=False)])
        out_values = {f"loss/{k}": v for k, v in loss_sums.items()}
        out_values.update(log_sums)
        out_values.update({f"grad_norm/{k}": v for k, v in self._grad_norms.items()})
        return out_values

    def _sharded_micro_batch(self, batch: Any, micro: int, keys: list[str] | None
                             ) -> tuple[list[str], dict[str, float], dict[str, float]]:
        """One micro-batch as ``settings.shards`` shards: this process's shards one after another, each
        from the same derived generator state; gradients (already averaged over the global batch and
        divided by ``grad_accum``) added to ``.grad``; the shard-mean losses and logs returned."""
        sharding = dist.ShardedStep(self.settings.shards)  # type: ignore[arg-type]
        accum = self.settings.grad_accum
        grads: dict[str, list[list[Tensor | None]]] = {}
        loss_parts: list[Tensor] = []
        log_parts: list[dict[str, float]] = []
        for local, piece in enumerate(split_batch(batch, sharding.per_process)):
            seed_everything(derive_seed(self.seed, "shard", self.step, micro))
            with autocast(self.device, self.settings.precision), sharding.shard(local):
                out = self._step_fn(piece, step=self.step)
            losses, logs = self._check_output(out)
            keys = self._same_keys(keys, losses)
            items = list(losses.items())
            for i, (group, loss) in enumerate(items):
                grads.setdefault(group, []).append(self._group_grads(group, loss, retain_graph=i < len(items) - 1))
            loss_parts.append(torch.stack([loss.detach().float().reshape(()) for loss in losses.values()]))
            log_parts.append(logs)
        # Anything a component left for the end of the step (the codebook's update) draws from a
        # state every process shares.
        seed_everything(derive_seed(self.seed, "shard-end", self.step, micro))
        sharding.finish()
        values = dict(zip(keys, (sharding.combine(loss_parts) / sharding.count).tolist()))
        self._check_finite(values, _shard_mean(log_parts))
        for group, per_shard in grads.items():
            self._add_combined_grads(sharding, self.groups[group], per_shard, scale=1.0 / (sharding.count * accum))
        return keys, values, _shard_mean(log_parts)

    def _add_combined_grads(self, sharding: "dist.ShardedStep", params: list[nn.Parameter],
                            per_shard: list[list[Tensor | None]], *, scale: float) -> None:
        """``.grad += scale * (sum of the shards' gradients in shard order)``; a parameter no shard of
        any process reached keeps ``grad = None``."""
        by_dtype: dict[torch.dtype, list[int]] = {}
        for i, p in enumerate(params):
            by_dtype.setdefault(p.dtype, []).append(i)
        for members in by_dtype.values():
            flats = [torch.cat([(g[i] if g[i] is not None else torch.zeros_like(params[i])).reshape(-1)
                                for i in members]) for g in per_shard]
            reached = [torch.tensor([g[i] is not None for i in members], dtype=torch.float32,
                                    device=flats[0].device) for g in per_shard]
            total = sharding.combine(flats).mul_(scale)
            used = sharding.combine(reached).tolist()
            offset = 0
            for i, n_used in zip(members, used):
                p = params[i]
                n = p.numel()
                if n_used > 0:
                    g = total[offset:offset + n].view_as(p)
                    if p.grad is None:
                        p.grad = g.clone()
                    else:
                        p.grad.add_(g)
                offset += n

    def _same_keys(self, keys: list[str] | None, losses: Mapping[str, Tensor]) -> list[str]:
        if keys is not None and list(losses) != keys:
            raise ComponentError(f"{type(self.model).__name__}.training_step returned losses "
                                 f"{list(losses)} then {keys} within one optimizer step")
        return list(losses)

    def _check_output(self, out: Any) -> tuple[dict[str, Tensor], dict[str, float]]:
        name = type(self.model).__name__
        if not isinstance(out, TrainStep):
            raise ComponentError(f"{name}.training_step must return a TrainStep, got {type(out).__name__}")
        unknown = [k for k in out.losses if k not in self.groups]
        if unknown or not out.losses:
            raise ComponentError(f"{name}.training_step returned losses for {list(out.losses)}; "
                                 f"its optimizer groups are {list(self.groups)}")
        logs: dict[str, float | Tensor] = {}
        for k, v in out.logs.items():
            if self._defer_checks and isinstance(v, Tensor):
                logs[k] = v.detach().float().mean().double()  # read on the host with the step's record
                continue
            try:
                logs[k] = _as_float(v)
            except (TypeError, ValueError):
                continue
        return dict(out.losses), logs

    def _finite_losses(self, losses: dict[str, Tensor], logs: dict[str, Any]) -> dict[str, Any]:
        """The losses averaged over processes; raise :class:`NonFiniteLossError` if one is not finite
        (or, deferring, keep them on the device for :meth:`_flush_checks`)."""
        stacked = dist.all_reduce_mean(torch.stack([loss.detach().float().reshape(()) for loss in losses.values()]))
        if self._defer_checks:
            values = dict(zip(losses, stacked.double().unbind()))
            self._pending_at(self.step)["losses"].append((values, logs))
            return values
        values = dict(zip(losses, stacked.tolist()))
        self._check_finite(values, logs)
        return values

    def _pending_at(self, step: int) -> dict[str, Any]:
        """The deferred checks of ``step``: its losses (with their logs) and its gradient norms."""
        return self._pending_checks.setdefault(step, {"losses": [], "norms": {}})

    def _flush_checks(self) -> None:
        """Read the deferred losses and gradient norms and check them, oldest step first (raises as
        the step-by-step check would have, naming the step that made the bad number)."""
        if not self._pending_checks:
            return
        pending, self._pending_checks = self._pending_checks, {}
        now = self.step
        try:
            for step, entry in sorted(pending.items()):
                self.step = step
                for values, logs in entry["losses"]:
                    self._check_finite(read_scalars(values), read_scalars(logs))
                for group, norm in entry["norms"].items():
                    self._check_grad_norm(group, float(norm))
        finally:
            self.step = now

    def _check_finite(self, values: dict[str, float], logs: dict[str, Any]) -> None:
        """Raise :class:`NonFiniteLossError` if a loss (averaged over the global batch) is not finite."""
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            terms = {k: v for k, v in logs.items() if not math.isfinite(v)}
            group = bad[0]
            shown = ", ".join(f"losses['{k}'] = {values[k]}" for k in bad)
            detail = (f"; non-finite logged terms: {', '.join(f'{k}={v}' for k, v in terms.items())}"
                      if terms else "")
            raise NonFiniteLossError(
                f"{self.description}: non-finite loss at step {self.step}: {shown}{detail}. "
                f"{self._kept_checkpoint_note()} Lower the learning rate, enable grad_clip or use "
                "precision fp32, then run again with --force (a changed recipe starts the stage afresh, "
                "replacing this stage's folder) or under another run name (--set name=...).",
                step=self.step, group=group, terms=terms,
            )

    def _check_grad_norm(self, group: str, norm: float) -> None:
        if not math.isfinite(norm):
            raise NonFiniteLossError(
                f"{self.description}: the gradient of losses['{group}'] at step {self.step} is not "
                f"finite (norm {norm}) although the loss is. {self._kept_checkpoint_note()} Lower "
                "the learning rate or check the loss for operations such as sqrt(0) or log(0).",
                step=self.step, group=group,
            )

    def _kept_checkpoint_note(self) -> str:
        if self.checkpoint_path.is_file() and self._last_saved_step is not None:
            return f"The last good checkpoint (step {self._last_saved_step}) is kept at {self.checkpoint_path}."
        if self.checkpoint_path.is_file():
            return f"The last good checkpoint is kept at {self.checkpoint_path}."
        return "No checkpoint had been written yet."

    def _group_grads(self, group: str, loss: Tensor, *, retain_graph: bool) -> list[Tensor | None]:
        """d(loss)/d(params of ``group``) (fp16: of the scaled loss); None where the loss does not reach."""
        params = self.groups[group]
        if not loss.requires_grad:
            return [None] * len(params)  # e.g. a discriminator loss switched off early in training
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        return [None if g is None else g.detach() for g in grads]

    def _accumulate(self, group: str, loss: Tensor, *, retain_graph: bool) -> None:
        """Add d(loss)/d(params of ``group``) to those parameters' ``.grad`` -- and nowhere else."""
        if not loss.requires_grad:
            return  # e.g. a discriminator loss switched off early in training
        params = self.groups[group]
        for p, g in zip(params, self._group_grads(group, loss, retain_graph=retain_graph)):
            if g is None:
                continue
            if p.grad is None:
                p.grad = g.detach()
            else:
                p.grad.add_(g)

    def _step_group(self, group: str, *, averaged: bool = False) -> None:
        """Average the group's gradients over processes (unless ``averaged`` already), clip, step."""
        params = self.groups[group]
        optimizer = self.optimizers[group]
        if not averaged:
            dist.all_reduce_gradients(params)
        # Parameters no loss reached (on any process) keep grad None; the optimizer skips them: no
        # update, no weight decay, no optimizer state. A group with none at all (a discriminator
        # before its switch-on step) costs nothing and starts its Adam moments fresh later.
        with_grad = [p for p in params if p.grad is not None]
        if self.scaler is not None and with_grad:
            self.scaler.unscale_(optimizer)
        clip = self.settings.grad_clip
        if clip is not None and with_grad:
            total = torch.nn.utils.clip_grad_norm_(with_grad, clip)
            if self._defer_checks:
                self._grad_norms[group] = total.double()
                if self.scaler is None:  # fp16's scaler skips a step with inf gradients itself
                    self._pending_at(self.step)["norms"][group] = total
            else:
                norm = float(total)
                if self.scaler is None:
                    self._check_grad_norm(group, norm)
                self._grad_norms[group] = norm
        elif clip is not None:
            self._grad_norms[group] = 0.0  # no loss reached the group: logged as a zero gradient
        self._last_lr[group] = float(optimizer.param_groups[0]["lr"])
        if self.scaler is not None and with_grad:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        self.schedulers[group].step()

    # -- logging and validation --------------------------------------------------------------

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t_start)

    def _run_validation(self, progress: TrainProgress) -> None:
        """Call ``validate`` on rank 0 with EMA weights, eval mode, no grad, forked RNG, under autocast."""
        self._flush_checks()
        if not self.is_main or self.validate is None:
            return
        if not progress.rich:  # a log says what the next minutes go to (sampling can be slow)
            progress.message(f"{self.description} step {self.step}/{self.settings.steps} validating")
        model = self.model
        was_training = model.training
        modes = [(m, m.training) for m in model.modules()]
        swap = self.ema.swapped_in(model) if self.ema is not None else contextlib.nullcontext()
        # In the stage's precision: a bf16 run validates (samples, reconstructs) in bf16 as it trains.
        with fork_rng(), torch.no_grad(), swap, autocast(self.device, self.settings.precision):
            model.eval()
            try:
                results = dict(self.validate(model, self.step) or {})
            finally:
                # Back through ``train()``, not by setting the flags alone: a module may tie state
                # to its mode (the U-Net's weights are channels-last in eval mode) and must undo it,
                # or rank 0 alone would train on after validation with other kernels than the rest.
                # Then each module's own flag exactly as it was (a frozen part stays in eval mode).
                model.train(was_training)
                for m, mode in modes:
                    m.training = mode
        values = {}
        for k, v in results.items():
            try:
                values[k] = _as_float(v)
            except (TypeError, ValueError):
                continue  # not a number: the callback may return extra information
        record: dict[str, Any] = {"tag": "val", "step": self.step, "time": round(self._elapsed(), 3)}
        record.update(values)
        self.metrics.write(record)
        self.history.append(record)
        if values:
            shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
            progress.message(f"{self.description} step {self.step} validation: {shown}")

    def _result(self) -> TrainResult:
        final: dict[str, Any] = {}
        train = [r for r in self.history if r.get("tag") == "train"]
        val = [r for r in self.history if r.get("tag") == "val"]
        if train:
            final.update({k: v for k, v in train[-1].items() if k != "tag"})
        if val:
            final.update({k: v for k, v in val[-1].items() if k not in ("tag", "step", "time")})
        return TrainResult(step=self.step, history=list(self.history), final=final)

    # -- checkpoints -------------------------------------------------------------------------

    def _weights_finite(self) -> bool:
        params = [p.detach() for ps in self.groups.values() for p in ps]
        if not params:
            return True
        maxima = torch.stack([n.float() for n in torch._foreach_norm(params, float("inf"))])
        return bool(torch.isfinite(maxima).all())

    def _save_checkpoint(self) -> None:
        self._flush_checks()
        if not self._weights_finite():
            raise NonFiniteLossError(
                f"{self.description}: weights are not finite after step {self.step}; no checkpoint was "
                f"written. {self._kept_checkpoint_note()} Lower the learning rate or enable grad_clip.",
                step=self.step,
            )
        self._write_checkpoint()

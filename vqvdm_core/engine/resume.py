"""The trainer's checkpoint: what it saves (model, EMA, optimizers, schedules, fp16 scaler, every
process's random generators, the data position) and how it resumes exactly from it.

:class:`CheckpointState` is mixed into :class:`~vqvdm_core.engine.trainer.Trainer`; it reads and
sets the trainer's attributes (``model``, ``ema``, ``optimizers``, ``schedulers``, ``scaler``,
``step``, ...). The file format (atomic write, ``weights_only`` load) is in
:mod:`vqvdm_core.engine.checkpoint`. See ``docs/engine.md`` ("Data order, randomness and resume").
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vqvdm_core.engine.batches import DataPosition
from vqvdm_core.engine.checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries, save_checkpoint
from vqvdm_core.engine.ema import EMA
from vqvdm_core.io.weights import check_finite
from vqvdm_core.runtime import distributed as dist
from vqvdm_core.runtime.seeding import capture_rng_state, restore_rng_state

__all__ = ["CHECKPOINT_NAME", "CheckpointState", "load_model_state", "model_state"]

CHECKPOINT_NAME = "last.pt"


def model_state(model: nn.Module) -> dict[str, Tensor]:
    """The weights a checkpoint keeps (``checkpoint_state_dict()`` when the model defines it)."""
    getter = getattr(model, "checkpoint_state_dict", None)
    return dict(getter() if callable(getter) else model.state_dict())


def load_model_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load :func:`model_state`'s ``state`` (``load_checkpoint_state_dict()`` when defined)."""
    loader = getattr(model, "load_checkpoint_state_dict", None)
    if callable(loader):
        loader(state)
    else:
        model.load_state_dict(state, strict=True)


class CheckpointState:
    """Saving and resuming a :class:`~vqvdm_core.engine.trainer.Trainer`'s training state."""

    # Set by the trainer.
    model: nn.Module
    ema: EMA | None
    optimizers: dict[str, Any]
    schedulers: dict[str, Any]
    scaler: Any
    groups: dict[str, list[Any]]
    settings: Any
    step: int
    seed: int
    rank: int
    world_size: int
    is_main: bool
    console: Any
    description: str
    checkpoint_path: Any
    _position: DataPosition
    _elapsed_before: float
    _last_saved_step: int | None
    # and the trainer's clock, ``_elapsed() -> float``

    def _write_checkpoint(self) -> None:
        """Write ``checkpoints/last.pt`` (rank 0; every process contributes its generator state)."""
        rng_states = dist.all_gather_object(capture_rng_state())
        if self.is_main:
            state = {
                "step": self.step,
                "elapsed": self._elapsed(),
                "model": model_state(self.model),
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "optimizers": {g: opt.state_dict() for g, opt in self.optimizers.items()},
                "schedulers": {g: sch.state_dict() for g, sch in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "rng": {"world_size": self.world_size, "ranks": rng_states},
                "data": {"seed": self.seed, **self._position.state_dict()},
                "settings": self.settings.model_dump(mode="json"),
            }
            save_checkpoint(state, self.checkpoint_path)
        self._last_saved_step = self.step

    def _resume(self) -> bool:
        """Load ``checkpoints/last.pt`` if it exists; True when training state was restored."""
        if self.is_main:
            remove_stale_temporaries(self.checkpoint_path.parent)
        dist.barrier()
        if not self.checkpoint_path.is_file():
            return False
        path = self.checkpoint_path
        state = load_checkpoint(path, map_location="cpu")
        check_finite(_tensors(state, keys=("model", "ema", "optimizers", "scaler")), path,
                     advice=f"training from it would go on with NaN weights; delete {path.parent} to start the "
                     "stage afresh (the loss diverged before it was written: lower the learning rate)")
        try:
            load_model_state(self.model, state["model"])
            if self.ema is not None:
                if state["ema"]:
                    self.ema.load_state_dict(state["ema"])  # type: ignore[arg-type]
                else:  # EMA switched on after the checkpoint: start the average here
                    self.ema = EMA(self.model, decay=self.settings.ema_decay,  # type: ignore[arg-type]
                                   params=[p for ps in self.groups.values() for p in ps])
            missing = sorted(set(self.optimizers) - set(state["optimizers"]))
            if missing:
                raise KeyError(f"no optimizer state for group(s) {missing}")
            for g, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][g])
                self.schedulers[g].load_state_dict(state["schedulers"][g])
            if self.scaler is not None and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())
            raise CheckpointError(
                f"checkpoint {path} does not fit this model or these settings ({reason}). Delete "
                f"{path.parent} to start the stage afresh."
            ) from exc
        self.step = int(state["step"])
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self._last_saved_step = self.step
        data = state["data"]
        self._position = DataPosition(int(data["epoch"]), int(data["batch"]))
        rng = state["rng"]
        if int(rng["world_size"]) == self.world_size:
            restore_rng_state(rng["ranks"][self.rank])
        else:
            # Every process of a run holds the same stream, so rank 0's continues the run on any
            # number of processes (a checkpoint of an older version, whose ranks drew independent
            # streams, continues from rank 0's).
            restore_rng_state(_on_this_device(rng["ranks"][0]))
            if self.is_main:
                self.console.print(f"{self.description}: checkpoint written by {rng['world_size']} "
                                   f"process(es), resumed by {self.world_size}")
        return True


def _tensors(state: dict[str, Any], *, keys: tuple[str, ...]) -> dict[str, Tensor]:
    """Every tensor under ``state[key]`` for ``keys``, by its dotted place (``optimizers.main.state.0.exp_avg``)."""
    out: dict[str, Tensor] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Tensor):
            out[where] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}.{i}")

    for key in keys:
        walk(state.get(key), key)
    return out


def _on_this_device(state: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's generator state with its first CUDA device's stream moved to this process's device
    (each process draws on its own device, rank 0 on its first)."""
    import torch

    cuda = state.get("cuda")
    if not cuda or not torch.cuda.is_available():
        return state
    states = [cuda[0]] * torch.cuda.device_count()
    return {**state, "cuda": states}

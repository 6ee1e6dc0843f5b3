"""What ``vqvdm sample`` samples from: a run directory or an exported pipeline folder."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from rich.console import Console

from vqvdm_core.errors import UserError, brief
from vqvdm_core.pipeline.context import RunContext
from vqvdm_core.recipe import SampleSettings

__all__ = ["SampleSource", "open_sample_source"]


@dataclass
class SampleSource:
    system: Any
    """The trained ``LatentVideoDiffusion`` on :attr:`device`."""
    meta: dict[str, Any]
    """The training data's ``num_classes``, ``class_names``, ``fps_values`` and, when it had other
    condition fields, ``condition_values`` (field -> values to sample)."""
    settings: SampleSettings
    """Default sample settings: the run's recipe's, or those the pipeline was exported with."""
    device: torch.device
    run: RunContext | None
    """The run's context; None for a pipeline folder (which has no data set)."""
    folder: Path | None = None
    """The exported pipeline folder it was loaded from (None for a run)."""

    def backend_policy(self) -> contextlib.AbstractContextManager[None]:
        """The run's ``runtime`` flags (TF32, cuDNN autotuning, deterministic kernels); an exported
        pipeline's: the defaults."""
        from vqvdm_core.runtime.backend_policy import backend_policy

        if self.run is None:
            return backend_policy()
        from vqvdm_core.pipeline import runtime_policy

        return runtime_policy(self.run.recipe)


def open_sample_source(path: Path, *, device: str | None = None, console: Console | None = None) -> SampleSource:
    """Open ``path``: a pipeline folder (``vqvdm export``), or a run directory or a file inside one."""
    from vqvdm_core.system.pretrained import INDEX_FILE, SYSTEM_FILE, is_pretrained_folder

    path = Path(path)
    if is_pretrained_folder(path):
        from vqvdm_core.runtime.devices import resolve_device
        from vqvdm_core.system import LatentVideoDiffusion

        target = resolve_device(device or "auto")
        system = LatentVideoDiffusion.from_pretrained(path, device=target)
        folder = path.parent if path.is_file() else path
        try:
            settings = SampleSettings.model_validate(system.sample_settings)
        except ValidationError as exc:
            raise UserError(f"{folder / SYSTEM_FILE}: its sample settings are not valid: "
                            f"{brief(exc, lines=3)}") from None
        return SampleSource(system=system, meta=dict(system.data_info), settings=settings, device=target, run=None,
                            folder=folder)
    if not any((p / "recipe.yaml").is_file() for p in [path, *path.parents]):
        raise UserError(f"{path} is neither a run directory (no recipe.yaml in it or above it) nor an exported "
                        f"pipeline folder (no {INDEX_FILE})")
    from vqvdm_core.pipeline import open_run

    ctx = open_run(path, [f"device={device}"] if device else [], console=console)
    meta = ctx.latents_meta()
    return SampleSource(system=ctx.system(trained=True), meta=meta, settings=ctx.recipe.sample,
                        device=ctx.device, run=ctx)

"""What every stage shares: the recipe, the run directory, the device, and how to build components."""

from __future__ import annotations

import json
import math
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from vqvdm_core.engine.loggers import LoggerSet
from vqvdm_core.errors import MissingFileError, UserError, state_dict_mismatch
from vqvdm_core.interfaces import VideoDataset, VideoTokenizer
from vqvdm_core.pipeline.run_dir import RunDir
from vqvdm_core.recipe import Recipe

TOKENIZER_WEIGHTS = "tokenizer.safetensors"
DENOISER_WEIGHTS = "denoiser.safetensors"
LATENTS_FILE = "latents.safetensors"


@dataclass
class RunContext:
    recipe: Recipe
    run: RunDir
    device: torch.device
    console: Console
    log: logging.Logger
    loggers: LoggerSet = field(default_factory=LoggerSet)
    """The recipe's experiment loggers (empty on ranks other than 0); closed by the command."""
    _cache: dict[str, Any] = field(default_factory=dict)

    def say(self, message: str) -> None:
        """A line for the person watching, also written to the run log (rank 0 only)."""
        from vqvdm_core.runtime.distributed import is_main

        if is_main():
            self.console.print(message, highlight=False, markup=False)
            self.log.info(message)

    # -- data ------------------------------------------------------------------------------

    def dataset(self, which: str) -> VideoDataset:
        """The ``train`` or ``val`` dataset (``val`` falls back to ``train`` when absent)."""
        if which not in self._cache:
            spec = self.recipe.data.train if which == "train" else (self.recipe.data.val or self.recipe.data.train)
            self._cache[which] = spec.build("dataset")
        return self._cache[which]  # type: ignore[no-any-return]

    # -- tokenizer -------------------------------------------------------------------------

    def tokenizer(self) -> VideoTokenizer:
        """The recipe's tokenizer with the tokenizer stage's weights, frozen, in eval mode."""
        tok: VideoTokenizer = self.recipe.tokenizer.build("tokenizer")
        if tok.trainable:
            path = self.run.stage_dir("tokenizer") / TOKENIZER_WEIGHTS
            self.run.require("tokenizer")
            try:
                tok.load_state_dict(load_weights(path))
            except RuntimeError as exc:  # missing / unexpected keys or other shapes
                raise UserError(f"{path} does not hold weights of this recipe's tokenizer "
                                f"({self.recipe.tokenizer.name}): {state_dict_mismatch(exc)}") from None
        tok.requires_grad_(False).eval()
        return tok.to(self.device)

    # -- system ----------------------------------------------------------------------------

    def system(self, *, trained: bool) -> Any:
        """The composed ``LatentVideoDiffusion``; with the denoiser stage's weights when ``trained``."""
        from vqvdm_core.system import build_system

        meta = self.latents_meta()
        system = build_system(
            self.recipe,
            num_classes=int(meta["num_classes"]),
            clip_shape=tuple(meta["clip_shape"]),  # type: ignore[arg-type]
            tokenizer=self.tokenizer(),  # the trained, frozen tokenizer
        )
        system.latent_scale.fill_(self._latent_scale(meta))
        if trained:
            self.run.require("denoiser")
            path = self.run.stage_dir("denoiser") / DENOISER_WEIGHTS
            state = load_weights(path)  # its own errors name the file
            try:
                system.load_checkpoint_state_dict(state)
            except UserError as exc:
                raise UserError(f"{path}: {exc}") from None
        return system.to(self.device)

    def denoiser_steps(self) -> int:
        """Optimizer steps the denoiser stage trained for: the step that samples and scores are logged at."""
        record = self.run.record("denoiser")
        info = record.info if record is not None else None
        return int((info or {}).get("steps", 0))

    def _latent_scale(self, meta: dict[str, Any]) -> float:
        """The latent scale the latents stage recorded; refused unless a positive finite number."""
        value = meta.get("scale")
        try:
            scale = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            scale = math.nan
        if not (math.isfinite(scale) and scale > 0):
            raise UserError(f"{self.run.stage_dir('latents') / 'stage.json'} records the latent scale {value!r}, "
                            "not a positive finite number (were the latents all equal or non-finite?): re-run the "
                            "latents stage with a working tokenizer or latents.scale set in the recipe (and --force)")
        return scale

    def latents_meta(self) -> dict[str, Any]:
        """What the latents stage recorded: scale, clip shape, classes, FPS values."""
        rec = self.run.require("latents")
        return rec.info or {}


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights exported by a stage; a clear error when the file is missing."""
    if not path.is_file():
        raise MissingFileError(f"weights not found: {path}. Run the stage that writes them first.")
    from vqvdm_core.engine.checkpoint import load_weights as _load
    from vqvdm_core.io.weights import check_finite

    state = _load(path)
    check_finite(state, path, advice="the training diverged; retrain the stage (e.g. with a lower learning "
                 "rate, and --force)")
    return state


def _json_safe(value: Any) -> Any:
    """Non-finite floats become the strings "inf", "-inf", "nan" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON, atomically."""
    from vqvdm_core.io.atomic import atomic_write

    text = json.dumps(_json_safe(data), indent=2, default=float, allow_nan=False).encode()
    atomic_write(path, lambda handle: handle.write(text), needed=len(text))



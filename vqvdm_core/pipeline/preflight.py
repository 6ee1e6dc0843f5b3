"""Before any work: the files and folders a run's stages will read, checked in a second.

A recipe can be valid and still fail an hour in, when the evaluate stage looks for the I3D weights
or the tokenizer stage for LPIPS's VGG16 file. :func:`missing_files` asks every component of the
recipe that the given stages will use (``Configurable.missing_files``: it only looks, never loads)
and collects the answers; ``vqvdm run`` refuses to start with them, ``vqvdm validate --check-data``
lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vqvdm_core.pipeline.stages import ORDER
from vqvdm_core.recipe import STAGES
from vqvdm_core.registry import REGISTRY, Registry

__all__ = ["missing_files"]

USED_BY: dict[str, frozenset[str]] = {
    path: frozenset(s.name for s in ORDER if path in s.reads) for path in dict.fromkeys(p for s in ORDER for p in s.reads)
}
"""The stages that read a recipe section's components (by path prefix; each stage's ``reads``); the
model's components (tokenizer, denoiser, schedule, conditioners, guidance) are used by every stage."""

TRAINED_BY: dict[str, str] = {path: s.name for s in ORDER for path in s.trains}
"""The stage that trains the component at a recipe path (it needs its training files there)."""


def missing_files(recipe: Any, *, stages: Sequence[str] = STAGES, registry: Registry = REGISTRY) -> list[str]:
    """One message per file or folder that a component used by ``stages`` would not find, each
    prefixed by the component's recipe path and name (``"evaluate.metrics.0 (fvd): ..."``)."""
    wanted = set(stages)
    problems: list[str] = []
    for path, kind, spec in recipe.components():
        users = next((used for prefix, used in USED_BY.items() if path == prefix or path.startswith(prefix + ".")),
                     None)
        if users is not None and not users & wanted:
            continue
        purpose = "train" if TRAINED_BY.get(path) in wanted else "use"
        cls = registry.load(kind, spec.name)
        problems += [f"{path} ({spec.name}): {message}" for message in cls.missing_files(spec.config, purpose=purpose)]
    return problems

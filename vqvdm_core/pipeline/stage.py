"""What a pipeline stage is: one frozen :class:`Stage` declared at the top of each ``stages/<name>.py``.

Everything else about stages is derived from these declarations (collected in pipeline order by
:mod:`vqvdm_core.pipeline.stages`): the run order, the chained stage hash (``run_dir``), which stages
run on rank 0 alone (``pipeline``) and which components each stage needs files for (``preflight``).
Adding a stage means writing one module with its ``STAGE`` and ``run(ctx)`` and naming it in
``stages/__init__.py``'s ordered list (and in ``recipe.StageName``, which a test keeps in step).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Stage"]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    ``name`` is the stage's name (its folder in the run directory and its ``stages:`` entry);
    ``upstream`` the stage whose outputs it reads (its hash is chained with that stage's);
    ``hash_paths`` the recipe parts its own hash covers (``Recipe.hash``); ``main_process_only``
    whether rank 0 runs it alone under torchrun (the training stages run on every process);
    ``reads`` the recipe paths (prefixes) of the components whose files it reads, for the preflight
    file check (the model's components, named by no stage, are read by every stage); ``trains`` the
    recipe paths of the components it trains (they are asked for their training files); ``module``
    the module whose ``run(ctx) -> info`` runs it.
    """

    name: str
    upstream: str | None
    hash_paths: tuple[str, ...]
    main_process_only: bool = False
    reads: tuple[str, ...] = ()
    trains: tuple[str, ...] = ()
    module: str = ""

    @property
    def function(self) -> Callable[..., dict[str, Any]]:
        """The stage's ``run(ctx) -> info`` (looked up in :attr:`module`)."""
        return importlib.import_module(self.module).run  # type: ignore[no-any-return]

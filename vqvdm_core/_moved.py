"""Old module paths of ``vqvdm_core``, still importable: each is the module it moved to.

``vqvdm_core`` was regrouped into folders that read as its architecture (docs/architecture.md,
"Where things live"). So that code written against the flat layout keeps working, importing an old
path gives the very module object at its new path, registered in ``sys.modules`` under both names
(``vqvdm_core.config.ComponentConfig is vqvdm_core.interfaces.configurable.ComponentConfig``);
no warning is raised. The core, its tests and the default plug-ins use the new paths: this table is
for code outside the repository. :func:`install` (called by ``vqvdm_core/__init__.py``) puts the
finder on ``sys.meta_path``; ``python -m <old path>`` runs the module at its new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "vqvdm_core.config": "vqvdm_core.interfaces.configurable",
    "vqvdm_core.sampling": "vqvdm_core.interfaces.sampler",
    "vqvdm_core.recipe_schema": "vqvdm_core.recipe.schema",
    "vqvdm_core.recipe_loading": "vqvdm_core.recipe.loading",
    "vqvdm_core.recipe_overrides": "vqvdm_core.recipe.overrides",
    "vqvdm_core.recipe_hashing": "vqvdm_core.recipe.hashing",
    "vqvdm_core.recipe_docs": "vqvdm_core.recipe.docs",
    "vqvdm_core.long_video": "vqvdm_core.system.long_video",
    "vqvdm_core.pretrained": "vqvdm_core.system.pretrained",
    "vqvdm_core.video_io": "vqvdm_core.io.video",
    "vqvdm_core.pixels": "vqvdm_core.io.pixels",
    "vqvdm_core.paths": "vqvdm_core.io.paths",
    "vqvdm_core.weights": "vqvdm_core.io.weights",
    "vqvdm_core.devices": "vqvdm_core.runtime.devices",
    "vqvdm_core.distributed": "vqvdm_core.runtime.distributed",
    "vqvdm_core.seeding": "vqvdm_core.runtime.seeding",
    "vqvdm_core.progress": "vqvdm_core.runtime.progress",
    "vqvdm_core.report": "vqvdm_core.reporting.report",
    "vqvdm_core.report_media": "vqvdm_core.reporting.media",
    "vqvdm_core.measure": "vqvdm_core.profiling.measure",
    "vqvdm_core.bench": "vqvdm_core.profiling.table3",
    "vqvdm_core.loggers": "vqvdm_core.engine.loggers",
    "vqvdm_core.engine.loader": "vqvdm_core.engine.batches",
    "vqvdm_core.engine.plots": "vqvdm_core.reporting.plots",
    "vqvdm_core.data.loader": "vqvdm_core.data.collate",
}
"""Old module path -> the module it is now. ``vqvdm_core.interfaces``, ``vqvdm_core.recipe`` and
``vqvdm_core.system`` became packages of those names that re-export what the modules held."""


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path (the same object, not a copy)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__  # the import system sets __spec__ to the alias's: restored below
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_spec  # already executed under its new name; keep its own spec

    def get_code(self, fullname: str) -> CodeType | None:
        """The new module's code, for ``python -m <old path>``."""
        spec = importlib.util.find_spec(self.target)
        loader = spec.loader if spec is not None else None
        return loader.get_code(self.target) if isinstance(loader, importlib.abc.InspectLoader) else None


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED`; every other name is left to the next finder."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (a reload of ``vqvdm_core`` adds no second one)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())

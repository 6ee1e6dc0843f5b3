"""vqvdm: latent video diffusion with a 3D VQGAN, as a library of swappable components.

The core defines the interfaces (:mod:`vqvdm_core.interfaces`), a registry fed by entry points
(:mod:`vqvdm_core.registry`) and recipes (:mod:`vqvdm_core.recipe`). Components, the paper's
defaults included, are plug-ins found through entry points. Where each part lives:
docs/architecture.md ("Where things live"); module paths of the flat layout before it still import
(:mod:`vqvdm_core._moved`).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from vqvdm_core._moved import install as _install_moved
from vqvdm_core.errors import ComponentError, MissingFileError, RecipeError, UserError, WorkFailure
from vqvdm_core.recipe import Recipe, load_recipe
from vqvdm_core.registry import KINDS, REGISTRY, create, load, register

_install_moved()  # old module paths (vqvdm_core.config, vqvdm_core.bench, ...) import as their new modules

try:
    __version__ = _metadata.version("vqvdm")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "KINDS",
    "REGISTRY",
    "ComponentError",
    "MissingFileError",
    "Recipe",
    "RecipeError",
    "UserError",
    "WorkFailure",
    "__version__",
    "create",
    "load",
    "load_recipe",
    "register",
]

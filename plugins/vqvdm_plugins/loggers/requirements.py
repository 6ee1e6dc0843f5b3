"""The optional package a logger needs: checked without importing it, named with its install line."""

from __future__ import annotations

import importlib.util

__all__ = ["missing_message", "missing_package", "require"]


def missing_message(module: str, *, logger: str, extra: str) -> str:
    """The one line that says what to install for ``logger``."""
    return (f"the '{logger}' logger needs the {module} package, which is not installed: "
            f"pip install 'vqvdm[{extra}]'")


def require(module: str, *, logger: str, extra: str) -> None:
    """Raise :class:`ModuleNotFoundError` with :func:`missing_message` when ``module`` cannot be
    found. Only looks the module up, without importing the package."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModuleNotFoundError(missing_message(module, logger=logger, extra=extra), name=module)


def missing_package(module: str, *, logger: str, extra: str) -> list[str]:
    """``[]`` if ``module`` can be imported, else ``[`` :func:`missing_message` ``]`` (a logger's
    ``missing_files``: ``vqvdm run`` and ``vqvdm validate --check-data`` report it before any work)."""
    try:
        require(module, logger=logger, extra=extra)
    except ModuleNotFoundError as exc:
        return [str(exc)]
    return []

"""Fixtures shared by every test folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes tests/standins.py importable


@pytest.fixture(scope="session")
def standins() -> Iterator[None]:
    """Register the tiny stand-in components in the process-wide registry."""
    from standins import STANDINS

    from vqvdm_core.registry import REGISTRY

    for (kind, name), cls in STANDINS.items():
        REGISTRY.register(kind, name, cls, replace=True)
    yield
    for kind, name in STANDINS:
        REGISTRY.unregister(kind, name)

"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes tests/standins.py importable

# Tests use tiny tensors: one intra-op thread per process is faster than two fighting over the cores
# (and keeps the multi-process tests from oversubscribing). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@contextmanager
def registered_standins() -> Iterator[None]:
    """The tiny stand-in components, registered in the process-wide registry while inside."""
    from standins import STANDINS

    from vqvdm_core.registry import REGISTRY

    for (kind, name), cls in STANDINS.items():
        REGISTRY.register(kind, name, cls, replace=True)
    try:
        yield
    finally:
        for kind, name in STANDINS:
            REGISTRY.unregister(kind, name)


@pytest.fixture
def standins() -> Iterator[None]:
    """Register the tiny stand-in components for one test."""
    with registered_standins():
        yield


@pytest.fixture(scope="module")
def module_standins() -> Iterator[None]:
    """Register the tiny stand-in components for one test module."""
    with registered_standins():
        yield

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


# -- the device the suite runs on ---------------------------------------------------------------
#
# ``pytest --device cuda`` (or ``VQVDM_TEST_DEVICE=cuda``) runs the tests that take the ``device``
# fixture on that device, and the ``cuda``-marked ones, which are skipped (with the reason) on the
# CPU. Every other test stays on the CPU whatever the option, as CPU CI runs it.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default=os.environ.get("VQVDM_TEST_DEVICE", "cpu"),
                     help="device of the device tests (the `device` fixture, the `cuda` marker): cpu, cuda, "
                          "cuda:N; default $VQVDM_TEST_DEVICE or cpu")


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--device")
    if name != "cpu":
        import torch

        if name.startswith("cuda") and not torch.cuda.is_available():
            raise pytest.UsageError(f"--device {name}: CUDA is not available here (no GPU or a CPU-only torch)")
        if not (name.startswith("cuda") or name == "mps"):
            raise pytest.UsageError(f"--device {name}: use cpu, cuda, cuda:N or mps")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    name = config.getoption("--device")
    if name.startswith("cuda"):
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device: run pytest --device cuda (this run: --device {name})")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config):
    """The device the device tests run on (``--device``; the CPU by default)."""
    import torch

    return torch.device(pytestconfig.getoption("--device"))


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

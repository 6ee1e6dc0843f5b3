"""Fixtures of the core tests: importable fake plug-ins and fake installed distributions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # makes tests/core/fake_plugins importable as `fake_plugins`

from fake_plugins.distributions import write_distribution  # noqa: E402


@pytest.fixture
def make_distribution(tmp_path: Path) -> Callable[..., Path]:
    """``make_distribution(name, version, {group: {name: target}}, site="site")`` -> the site folder
    holding the new ``.dist-info`` (several calls with the same ``site`` share one folder)."""

    def make(name: str, version: str, entry_points: dict[str, dict[str, str]],
             site: str = "site") -> Path:
        folder = tmp_path / site
        write_distribution(folder, name, version, entry_points)
        return folder

    return make

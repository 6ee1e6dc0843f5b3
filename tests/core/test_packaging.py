"""The package declares what it imports and imports what it declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]

MODULE_OF = {"pyyaml": "yaml", "pillow": "PIL", "av": "av"}
"""Distribution name -> import name where they differ."""

NEEDED_BY_ANOTHER = {"torchvision": "lpips builds its VGG/AlexNet trunk from torchvision.models"}
"""Declared without a direct import, and why."""


def test_every_declared_dependency_is_imported_by_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sources = "\n".join(p.read_text() for folder in ("vqvdm_core", "plugins/vqvdm_plugins")
                        for p in (ROOT / folder).rglob("*.py"))
    unused = []
    for requirement in project["dependencies"]:
        dist = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        module = MODULE_OF.get(dist, dist.replace("-", "_"))
        if dist in NEEDED_BY_ANOTHER:
            continue
        if not re.search(rf"^\s*(import|from) {re.escape(module)}(\.|\s|$)", sources, flags=re.M):
            unused.append(dist)
    assert unused == []

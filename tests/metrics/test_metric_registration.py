"""The metric plug-ins load through their entry points and conform to the Metric interface."""

from __future__ import annotations

import pytest

from vqvdm_core.errors import MissingFileError
from vqvdm_core.registry import REGISTRY, conformance_problem

NAMES = ["fvd", "kvd", "is", "reconstruction", "motion_probe"]


@pytest.mark.parametrize("name", NAMES)
def test_metric_entry_point_loads_and_conforms(name):
    cls = REGISTRY.load("metric", name)
    assert conformance_problem("metric", cls) is None
    assert cls.__doc__.strip()


def test_requires_real_matches_what_each_metric_compares():
    flags = {name: REGISTRY.load("metric", name).requires_real for name in NAMES}
    assert flags == {"fvd": True, "kvd": True, "is": False, "reconstruction": True, "motion_probe": False}


def test_probe_builds_from_the_registry_with_data_defaults():
    probe = REGISTRY.create("metric", "motion_probe")
    assert (probe.config.num_classes, probe.config.speed) == (4, 0.25)


def test_fvd_from_the_registry_without_weights_fails_with_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VQVDM_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("VQVDM_I3D_TORCHSCRIPT", raising=False)
    with pytest.raises(MissingFileError, match="i3d_torchscript.pt"):
        REGISTRY.create("metric", "fvd", i3d_format="torchscript")

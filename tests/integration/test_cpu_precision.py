"""The paper recipes train in bf16; on a CPU that only emulates bfloat16 that is a trap worth a warning."""

from __future__ import annotations

import warnings

import pytest

from vqvdm_core.runtime import devices


@pytest.fixture
def fresh_warning_state(monkeypatch):
    monkeypatch.setattr(devices, "_warned_emulated_bf16", False)


def test_bf16_on_a_cpu_that_emulates_it_warns_once_with_the_fix(fresh_warning_state, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"bf16 on a CPU without native bfloat16.*precision: fp32"):
        with devices.autocast("cpu", "bf16"):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second use stays quiet
        with devices.autocast("cpu", "bf16"):
            pass


def test_bf16_on_a_cpu_with_native_bfloat16_and_fp32_do_not_warn(fresh_warning_state, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with devices.autocast("cpu", "bf16"):
            pass
        with devices.autocast("cpu", "fp32"):
            pass

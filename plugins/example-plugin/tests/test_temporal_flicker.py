"""Tests of the temporal_flicker plug-in, runnable against an installed copy: `pytest tests`.

They check the three things vqvdm needs from any plug-in: it is found through its entry point,
it passes the registry's interface checks, and it computes the right numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqvdm_core import create
from vqvdm_core.errors import ComponentError
from vqvdm_core.registry import Registry, conformance_problem
from vqvdm_example_plugin import TemporalFlicker


def test_the_entry_point_is_installed_and_the_class_conforms():
    registry = Registry()
    entry = registry.entry("metric", "temporal_flicker")
    assert entry.distribution == "vqvdm-example-plugin"
    assert registry.load("metric", "temporal_flicker") is TemporalFlicker
    assert conformance_problem("metric", TemporalFlicker) is None


def test_a_still_clip_has_no_flicker_and_a_full_swing_has_flicker_one():
    metric = TemporalFlicker()
    still = torch.zeros(2, 3, 5, 4, 4)
    swing = torch.ones(1, 3, 4, 2, 2)
    swing[:, :, 1::2] = -1.0  # black, white, black, white: the largest possible change
    metric.update(fake=swing, real=still)
    values = metric.compute()
    assert values["fake"] == pytest.approx(1.0) and values["real"] == 0.0
    assert "ratio" not in values  # no ratio against a still real set


@pytest.mark.parametrize("order, stride", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_values_match_numpy_finite_differences(order, stride):
    rng = np.random.default_rng(0)
    fake = rng.uniform(-1, 1, size=(3, 3, 7, 4, 5))
    real = np.tanh(rng.normal(size=(2, 3, 7, 4, 5)))
    metric = create("metric", "temporal_flicker", order=order, stride=stride)
    for batch in np.array_split(fake, 2):  # accumulating over batches = one big batch
        metric.update(fake=torch.from_numpy(batch).float())
    metric.update(real=torch.from_numpy(real).float())

    def reference(v: np.ndarray) -> float:
        x = (v + 1) / 2
        for _ in range(order):  # order-th difference with step `stride`
            x = x[:, :, stride:] - x[:, :, :-stride]
        return float(np.abs(x).mean())

    values = metric.compute()
    assert values["fake"] == pytest.approx(reference(fake), rel=1e-5)
    assert values["real"] == pytest.approx(reference(real), rel=1e-5)
    assert values["ratio"] == pytest.approx(reference(fake) / reference(real), rel=1e-5)


def test_second_order_ignores_steady_motion_but_first_order_does_not():
    t = torch.arange(6, dtype=torch.float32)
    ramp = (t / 10 - 0.25).view(1, 1, 6, 1, 1).expand(1, 3, 6, 2, 2)  # brightens steadily
    first, second = TemporalFlicker(order=1), TemporalFlicker(order=2)
    for m in (first, second):
        m.update(fake=ramp)
    assert first.compute()["fake"] == pytest.approx(0.05)
    assert second.compute()["fake"] == pytest.approx(0.0, abs=1e-7)


def test_reset_forgets_and_real_false_needs_no_real_clips():
    metric = TemporalFlicker(real=False)
    assert metric.requires_real is False and TemporalFlicker().requires_real is True
    metric.update(fake=torch.zeros(1, 3, 3, 2, 2), real=torch.ones(1, 3, 3, 2, 2))
    assert set(metric.compute()) == {"fake"}
    metric.reset()
    with pytest.raises(ValueError, match="no generated clips"):
        metric.compute()


def test_bad_config_and_too_short_clips_are_clear_errors():
    with pytest.raises(ComponentError, match="stride"):
        create("metric", "temporal_flicker", stride=0)
    with pytest.raises(ComponentError, match="extra"):
        create("metric", "temporal_flicker", strides=2)
    with pytest.raises(ValueError, match="needs more than 4 frames per clip, got 4"):
        TemporalFlicker(order=2, stride=2).update(fake=torch.zeros(1, 3, 4, 2, 2))

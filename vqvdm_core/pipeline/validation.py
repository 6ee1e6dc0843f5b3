"""Helpers shared by the stages that validate or evaluate: held-out clips and metric runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from vqvdm_core.interfaces import update_metric
from vqvdm_core.recipe import ComponentSpec

if TYPE_CHECKING:
    from vqvdm_core.pipeline.context import RunContext


def held_out_batch(ctx: "RunContext", count: int) -> torch.Tensor | None:
    """The first ``count`` clips of the validation set, stacked ``(N, 3, T, H, W)`` (None if 0)."""
    if count <= 0:
        return None
    ds = ctx.dataset("val")
    n = min(count, len(ds))
    return torch.stack([ds[i]["video"] for i in range(n)])


class MetricSet:
    """Metrics built once from recipe nodes and scored on one batch at a time."""

    def __init__(self, specs: Sequence[ComponentSpec], device: torch.device, *, prefix: str = "val/"):
        self.metrics = [spec.build("metric").to(device) for spec in specs]
        self.prefix = prefix

    def __call__(self, *, real: torch.Tensor | None = None, fake: torch.Tensor | None = None,
                 conditions: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Score one batch; ``conditions`` (field -> values) reach each metric as
        :func:`~vqvdm_core.interfaces.update_metric` passes them."""
        results: dict[str, float] = {}
        for metric in self.metrics:
            metric.reset()
            update_metric(metric, real=real, fake=fake, conditions=conditions)
            for key, value in metric.compute().items():
                results[f"{self.prefix}{key}"] = float(value)
        return results

"""The metric interface, and :func:`update_metric`, which feeds one the generated clips' conditions."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["Metric", "accepts_conditions", "update_metric"]


class Metric(Configurable, abc.ABC):
    """An accumulating evaluation metric.

    ``update`` takes batches of real and/or generated video ``(B, 3, T, H, W)`` in [-1, 1]
    and, for conditional metrics, the conditions the generated clips were asked for: always as
    ``labels`` and ``fps`` (``None`` when not conditioned on), and, to a metric whose ``update``
    declares a ``conditions`` keyword (or ``**kwargs``), also as ``conditions``, a mapping of every
    conditioner field to its ``(B,)`` values (``{"label": ..., "fps": ..., "motion": ...}``). The
    stages call :func:`update_metric`, which does this, so metrics written for ``labels``/``fps``
    keep working unchanged.
    """

    kind: ClassVar[str] = "metric"

    requires_real: ClassVar[bool] = True
    """Whether ``compute`` needs real clips (FVD, KVD) or only generated ones (IS, probes)."""

    inputs: ClassVar[str] = "video"
    """What ``update`` is fed: ``"video"`` (clips in [-1, 1]) or ``"latent"``: the generated latents
    ``(B, c, t, h, w)`` before decoding and, as the real set, the cached training latents (both
    unscaled; ``latent_fd``). A samples file's clips are encoded with the run's tokenizer for it."""

    @abc.abstractmethod
    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """Values from everything accumulated since the last ``reset``."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    def set_reference(self, identity: str) -> Any:
        """Name the real set the next real clips come from (e.g. a hash of its recipe node), so a
        metric may cache real-set statistics across runs. Metrics without such a cache ignore it."""
        return None

    @property
    def needs_real(self) -> bool:
        """Whether ``update`` still wants real clips (False once cached real statistics are loaded)."""
        return self.requires_real

    def to(self, device: torch.device | str) -> "Metric":  # noqa: D401 - mirrors nn.Module.to
        """Move feature networks to ``device``; metrics without networks ignore it."""
        return self

    def protocol(self) -> dict[str, Any]:
        """The settings that change the number; written next to it in ``metrics.json``."""
        return self.config.model_dump()


def accepts_conditions(metric: Metric) -> bool:
    """Whether ``metric.update`` takes a ``conditions`` keyword (declared, or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(metric.update).parameters
    except (TypeError, ValueError):
        return False
    return "conditions" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def update_metric(metric: Metric, *, real: Tensor | None = None, fake: Tensor | None = None,
                  conditions: Mapping[str, Tensor] | None = None) -> None:
    """``metric.update`` with the generated clips' ``conditions`` (field -> ``(B,)`` values): as
    ``labels``/``fps`` always, and as ``conditions`` too when the metric accepts it (see :class:`Metric`)."""
    kwargs: dict[str, Any] = {"real": real, "fake": fake}
    if fake is not None and conditions is not None:
        given = dict(conditions)
        kwargs["labels"], kwargs["fps"] = given.get("label"), given.get("fps")
        if accepts_conditions(metric):
            kwargs["conditions"] = given
    metric.update(**kwargs)

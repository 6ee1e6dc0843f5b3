"""Loss curves of a training stage, rendered to PNG with matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_loss_curves"]

_NOT_CURVES = {"step", "time", "tag", "epoch", "it_per_s"}


def _series(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key in keys:
        xs, ys = [], []
        for r in records:
            value = r.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                xs.append(int(r["step"]))
                ys.append(float(value))
        if xs:
            out[key] = (xs, ys)
    return out


def _keys(records: Sequence[dict[str, Any]], keep: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            if k not in _NOT_CURVES and keep(k):
                seen.setdefault(k, None)
    return list(seen)


def plot_loss_curves(history: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Write ``path`` (PNG): losses, other logged terms and validation results against step.

    Returns None (and writes nothing) when ``history`` holds no training record.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vqvdm_core.engine.checkpoint import atomic_write

    train = [r for r in history if r.get("tag", "train") == "train"]
    val = [r for r in history if r.get("tag") == "val"]
    if not train:
        return None
    panels = [
        ("loss", _series(train, _keys(train, lambda k: k.startswith("loss/")))),
        ("logged terms", _series(train, _keys(train, lambda k: not k.startswith(("loss/", "lr/"))))),
        ("learning rate", _series(train, _keys(train, lambda k: k.startswith("lr/")))),
        ("validation", _series(val, _keys(val, lambda k: True))),
    ]
    panels = [(name, series) for name, series in panels if series]
    height = 2.6 * len(panels)
    fig = Figure(figsize=(7, height))
    # A fixed layout: constrained/tight layout measure every tick label and cost seconds.
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.5 / height, top=1 - 0.85 / height, hspace=0.55)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, panels):
        for key, (xs, ys) in series.items():
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 3 else None, markersize=3)
        positive = all(y > 0 for _, ys in series.values() for y in ys)
        if name == "loss" and positive:
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2 if len(series) > 4 else 1)
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))

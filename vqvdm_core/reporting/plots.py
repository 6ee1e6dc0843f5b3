"""Loss curves of a training stage, rendered to PNG with matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["plot_loss_curves", "curves_figure", "is_current"]

_NOT_CURVES = {"step", "time", "tag", "epoch", "it_per_s"}


CURVES_KEY = "vqvdm-curves"
CURVES_VERSION = "2"
"""Written into the PNG's text chunks (``CURVES_KEY``): the layout of the plot, so a report can tell
a plot made by this version from one an older version left in a run directory."""

_NCOLS = 4


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key in keys:
        xs, ys = [], []
        for r in records:
            value = r.get(key)
            if _is_number(value):
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


@dataclass
class _Panel:
    title: str
    names: list[str]  # the curve's key first, then keys logged with the very same values
    train: tuple[list[int], list[float]] | None = None
    val: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def _panels(train: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]]) -> tuple[list[_Panel], list[str]]:
    """One panel per logged quantity (losses, other terms, validation-only results, learning rates),
    validation results drawn on the panel of the training term of the same name; and the terms that
    never changed, as ``name = value`` notes."""
    series = _series(train, _keys(train, lambda k: True))
    groups: dict[tuple[tuple[int, ...], tuple[float, ...]], list[str]] = {}
    for key, (xs, ys) in series.items():  # keys logged twice with the same values share one panel
        groups.setdefault((tuple(xs), tuple(ys)), []).append(key)
    panels, constant = [], []
    for names in groups.values():
        xs, ys = series[names[0]]
        if len(ys) > 1 and min(ys) == max(ys):
            constant.append(f"{' = '.join(names)} = {ys[0]:.4g}")
        else:
            panels.append(_Panel(names[0], names, train=(xs, ys)))
    panels.sort(key=lambda p: 0 if p.title.startswith("loss") else 2 if p.title.startswith("lr/") else 1)
    by_name = {name: p for p in panels for name in p.names}
    own = []
    for key, points in _series(val, _keys(val, lambda k: True)).items():
        short = key.removeprefix("val/")
        panel = by_name.get(short) or by_name.get(f"loss/{short}")
        if panel is None:
            panel = _Panel(key, [key])
            own.append(panel)
        panel.val[key] = points
    first_lr = next((i for i, p in enumerate(panels) if p.title.startswith("lr/")), len(panels))
    return panels[:first_lr] + own + panels[first_lr:], constant


def _draw(ax: Any, panel: _Panel) -> None:
    values = []
    if panel.train is not None:
        xs, ys = panel.train
        ax.plot(xs, ys, color="C0", linewidth=1.4, marker="o" if len(xs) < 3 else None, markersize=4,
                label="train")
        values += ys
        if len(xs) == 1:
            ax.annotate(f"{ys[0]:.4g}", (xs[0], ys[0]), xytext=(6, 4), textcoords="offset points",
                        fontsize=9, color="C0")
    for key, (xs, ys) in panel.val.items():
        # Validation runs are few: markers, never a line through two far-apart points.
        ax.plot(xs, ys, linestyle="none", marker="D", markersize=6, color="C3", label=key)
        values += ys
        if len(xs) <= 3:
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.4g}", (x, y), xytext=(-8, -3), textcoords="offset points", ha="right",
                            va="top", fontsize=10, fontweight="bold", color="C3",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    if values and min(values) > 0 and max(values) / min(values) >= 10:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")  # the quantity spans a decade or more: ticks at 1, 2 and 5 per decade
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.12)
    label = panel.title if len(panel.names) == 1 else f"{panel.title} (= {', '.join(panel.names[1:])})"
    ax.set_title(label, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if panel.train is not None and panel.val:
        ax.legend(fontsize=7, loc="best")


def plot_loss_curves(history: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Write ``path`` (PNG) with :func:`curves_figure`; None (nothing written) when ``history`` holds no
    training record. The PNG carries ``CURVES_KEY: CURVES_VERSION`` (see :func:`is_current`)."""
    from vqvdm_core.io.atomic import atomic_write

    fig = curves_figure(history, title=title)
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={CURVES_KEY: CURVES_VERSION})
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def curves_figure(history: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """A matplotlib figure: one small panel per logged quantity against step, each on its own scale.

    Losses come first, then the other logged terms, validation results without a training term of
    the same name, and learning rates. A validation result is drawn as markers (with its value
    written next to it when there are few) on the panel of the training term of the same name
    (``val/psnr`` with ``psnr``); a term logged under two names with the same values is drawn once;
    terms that never changed are listed under the panels instead of drawn. A panel whose values
    are all positive and span a decade or more has a log scale. None when ``history`` holds no
    training record.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in history if r.get("tag", "train") == "train"]
    val = [r for r in history if r.get("tag") == "val"]
    if not train:
        return None
    panels, constant = _panels(train, val)
    notes = textwrap.wrap("constant over the run: " + "; ".join(constant), 150) if constant else []
    ncols = max(1, min(_NCOLS, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    top, bottom = 0.7, 0.35 + 0.22 * len(notes)  # inches
    height = 2.3 * nrows + top + bottom
    fig = Figure(figsize=(11.5, height))
    # A fixed layout: constrained/tight layout measure every tick label and cost seconds.
    fig.subplots_adjust(left=0.05, right=0.985, bottom=bottom / height, top=1 - top / height,
                        wspace=0.3, hspace=0.55)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    steps = [x for p in panels for xs, _ in ([p.train] if p.train else []) + list(p.val.values()) for x in xs]
    lo, hi = (min(steps), max(steps)) if steps else (0, 1)
    margin = max(1.0, 0.04 * (hi - lo))
    for i, ax in enumerate(axes):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        _draw(ax, panels[i])
        ax.set_xlim(lo - margin, hi + margin)  # every panel on the same steps
        if i + ncols >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("step", fontsize=8)
    if title:
        fig.suptitle(title, y=1 - 0.2 / height)
    for j, line in enumerate(notes):
        fig.text(0.05, (0.08 + 0.22 * (len(notes) - 1 - j)) / height, line, fontsize=8, color="#555")
    return fig


def is_current(path: str | Path) -> bool:
    """Whether ``path`` is a PNG drawn by this version of :func:`plot_loss_curves`."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get(CURVES_KEY) == CURVES_VERSION
    except Exception:  # noqa: BLE001 - a missing or unreadable file is not current
        return False

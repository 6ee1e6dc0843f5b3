"""Fake installed distributions: ``.dist-info`` folders that ``importlib.metadata`` reads like pip's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path


def write_distribution(site: Path, name: str, version: str,
                       entry_points: dict[str, dict[str, str]]) -> Path:
    """Write ``<site>/<name>-<version>.dist-info`` the way pip would for an installed plug-in.

    ``entry_points`` maps group -> {entry name: "module:Class"}.
    """
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{ep_name} = {value}" for ep_name, value in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def entry_points_from(*sites: Path) -> Callable[[str], Iterable[metadata.EntryPoint]]:
    """An ``entry_points(group)`` function over the distributions installed in ``sites`` only."""

    def select(group: str) -> list[metadata.EntryPoint]:
        dists = metadata.distributions(path=[str(s) for s in sites])
        return [ep for d in dists for ep in d.entry_points if ep.group == group]

    return select

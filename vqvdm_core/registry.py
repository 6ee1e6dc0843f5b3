"""One typed registry per component kind, fed by Python entry points.

Every component, the default ones included, is found through ``importlib.metadata`` entry points
(groups ``vqvdm.tokenizers``, ``vqvdm.denoisers``, ...). Listing reads names and distributions
only; a component's module is imported when the component is first used. A plug-in that fails
to import is reported as broken and breaks nothing else.

From Python, :func:`register` adds a class for this process only (an ablation without packaging).
"""

from __future__ import annotations

import difflib
import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vqvdm_core.errors import ComponentError

GROUPS: dict[str, str] = {
    "tokenizer": "vqvdm.tokenizers",
    "denoiser": "vqvdm.denoisers",
    "schedule": "vqvdm.schedules",
    "conditioner": "vqvdm.conditioners",
    "guidance": "vqvdm.guidance",
    "metric": "vqvdm.metrics",
    "dataset": "vqvdm.datasets",
}
"""Component kind -> entry-point group."""

KINDS: tuple[str, ...] = tuple(GROUPS)

T = TypeVar("T")


@dataclass
class Entry:
    """One registered component, loaded or not."""

    kind: str
    name: str
    target: str
    """``module:attr`` the entry point names, or ``module:qualname`` for a registered class."""
    distribution: str
    """The distribution that provides it, or ``"<register>"`` for a class registered in-process."""
    version: str = ""
    obj: type | None = None
    error: str | None = None
    conflict: "Entry | None" = None
    """Another provider of the same name: both are refused."""
    _entry_point: metadata.EntryPoint | None = None

    @property
    def status(self) -> str:
        if self.conflict is not None:
            return "duplicate"
        if self.error is not None:
            return "broken"
        return "loaded" if self.obj is not None else "available"

    @property
    def provider(self) -> str:
        return f"{self.distribution} ({self.target})"

    def summary(self) -> str:
        """First docstring line of the class; empty until it is loaded."""
        if self.obj is None or not self.obj.__doc__:
            return ""
        return inspect.cleandoc(self.obj.__doc__).splitlines()[0]


def _interface(kind: str) -> type:
    # Imported here so that listing needs neither torch nor the interfaces module.
    from vqvdm_core.interfaces import INTERFACES

    return INTERFACES[kind]


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown>", ""
    name = dist.metadata["Name"] if dist.metadata else getattr(dist, "name", "<unknown>")
    return str(name), str(dist.version or "")


def _check_kind(kind: str) -> None:
    if kind not in GROUPS:
        raise ComponentError(f"unknown component kind '{kind}'; kinds are: {', '.join(KINDS)}")


class Registry:
    """Entry-point discovery, lazy loading, interface checks and in-process registration."""

    def __init__(self, entry_points: Callable[[str], Iterable[metadata.EntryPoint]] | None = None):
        self._entry_points = entry_points or (lambda group: metadata.entry_points(group=group))
        self._entries: dict[str, dict[str, Entry]] | None = None
        self._lock = threading.RLock()

    # -- discovery -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Forget everything discovered (and registered) and read the entry points again."""
        with self._lock:
            self._entries = None

    def _discover(self) -> dict[str, dict[str, Entry]]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
            for kind, group in GROUPS.items():
                seen: set[tuple[str, str, str]] = set()
                for ep in self._entry_points(group):
                    dist, version = _distribution_of(ep)
                    key = (ep.name, ep.value, dist)
                    if key in seen:  # the same distribution seen twice on sys.path
                        continue
                    seen.add(key)
                    entry = Entry(kind, ep.name, ep.value, dist, version, _entry_point=ep)
                    self._add(entries[kind], entry)
            self._entries = entries
            return entries

    @staticmethod
    def _add(table: dict[str, Entry], entry: Entry) -> None:
        existing = table.get(entry.name)
        if existing is None:
            table[entry.name] = entry
            return
        # Refuse both: neither silently shadows the other.
        existing.conflict = entry
        entry.conflict = existing

    # -- queries ---------------------------------------------------------------------------

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry (of ``kind``), sorted by kind and name, without importing anything."""
        tables = self._discover()
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            _check_kind(k)
        return [tables[k][n] for k in kinds for n in sorted(tables[k])]

    def names(self, kind: str) -> list[str]:
        _check_kind(kind)
        return sorted(self._discover()[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name fails listing what exists and the nearest match."""
        _check_kind(kind)
        table = self._discover()[kind]
        if name in table:
            return table[name]
        available = sorted(table)
        near = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        listing = ", ".join(available) if available else "(none installed)"
        raise ComponentError(f"unknown {kind} '{name}'.{hint} Available {kind}s: {listing}")

    def load(self, kind: str, name: str) -> type:
        """Import (once) and return the class registered as ``name``, checked against its interface."""
        entry = self.entry(kind, name)
        with self._lock:
            if entry.conflict is not None:
                raise ComponentError(
                    f"{kind} '{name}' is provided twice and both are refused: "
                    f"{entry.provider} and {entry.conflict.provider}. Uninstall or rename one."
                )
            if entry.obj is not None:
                return entry.obj
            if entry.error is not None:
                raise ComponentError(f"{kind} '{name}' from {entry.provider} is broken: {entry.error}")
            try:
                assert entry._entry_point is not None
                obj = entry._entry_point.load()
            except Exception as exc:  # any failure of third-party code is reported, never fatal
                entry.error = f"{type(exc).__name__}: {exc}"
                raise ComponentError(
                    f"{kind} '{name}' from {entry.provider} failed to import: {entry.error}"
                ) from exc
            problem = conformance_problem(kind, obj)
            if problem:
                entry.error = problem
                raise ComponentError(f"{kind} '{name}' from {entry.provider} is refused: {problem}")
            entry.obj = obj
            return obj

    def try_load_all(self, kind: str | None = None) -> list[Entry]:
        """Load every entry (of ``kind``), recording failures on the entries instead of raising."""
        out = self.entries(kind)
        for e in out:
            if e.conflict is None and e.error is None and e.obj is None:
                try:
                    self.load(e.kind, e.name)
                except ComponentError:
                    pass
        return out

    # -- building --------------------------------------------------------------------------

    def config_class(self, kind: str, name: str) -> type[BaseModel]:
        return self.load(kind, name).Config  # type: ignore[attr-defined,no-any-return]

    def create(self, kind: str, name: str, /, **config: Any) -> Any:
        """Build component ``name`` of ``kind`` from keyword config values."""
        cls = self.load(kind, name)
        try:
            cfg = cls.Config(**config)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise ComponentError(f"{kind} '{name}': invalid config:\n{exc}") from exc
        return cls(cfg)

    # -- in-process registration -----------------------------------------------------------

    def register(self, kind: str, name: str, cls: type | None = None, *, replace: bool = False) -> Any:
        """Register ``cls`` as ``name`` of ``kind`` for this process. Usable as a decorator."""
        _check_kind(kind)

        def do(c: type) -> type:
            problem = conformance_problem(kind, c)
            if problem:
                raise ComponentError(f"cannot register {kind} '{name}': {problem}")
            entry = Entry(kind, name, f"{c.__module__}:{c.__qualname__}", "<register>", obj=c)
            with self._lock:
                table = self._discover()[kind]
                if name in table and not replace:
                    raise ComponentError(
                        f"cannot register {kind} '{name}' ({entry.target}): the name is already "
                        f"provided by {table[name].provider}. Pick another name or pass replace=True."
                    )
                table[name] = entry
            return c

        return do(cls) if cls is not None else do

    def unregister(self, kind: str, name: str) -> None:
        _check_kind(kind)
        with self._lock:
            self._discover()[kind].pop(name, None)


def conformance_problem(kind: str, obj: Any) -> str | None:
    """Why ``obj`` cannot serve as a component of ``kind``, or None if it can."""
    from pydantic import BaseModel as _BaseModel

    interface = _interface(kind)
    label = getattr(obj, "__qualname__", repr(obj))
    if not isinstance(obj, type):
        return f"{label} is not a class"
    if not issubclass(obj, interface):
        return f"class {obj.__module__}.{label} does not implement the {interface.__name__} interface"
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        return f"class {obj.__module__}.{label} leaves {interface.__name__} methods unimplemented: {missing}"
    config = getattr(obj, "Config", None)
    if not (isinstance(config, type) and issubclass(config, _BaseModel)):
        return f"class {obj.__module__}.{label} has no nested pydantic Config"
    if config.model_config.get("extra") != "forbid":
        return f"{obj.__module__}.{label}.Config must forbid unknown fields (extra='forbid')"
    return None


REGISTRY = Registry()
"""The process-wide registry the CLI, recipes and :func:`create` use."""


def create(kind: str, name: str, /, **config: Any) -> Any:
    """Build a registered component: ``create("denoiser", "unet3d", channels=64)``."""
    return REGISTRY.create(kind, name, **config)


def register(kind: str, name: str, cls: type | None = None, *, replace: bool = False) -> Any:
    """Register a class for this process: ``@register("schedule", "my_schedule")``."""
    return REGISTRY.register(kind, name, cls, replace=replace)


def load(kind: str, name: str) -> type:
    """The class registered as ``name`` of ``kind``."""
    return REGISTRY.load(kind, name)


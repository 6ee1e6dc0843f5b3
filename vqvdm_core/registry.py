"""One typed registry per component kind, fed by Python entry points.

Every component, the default ones included, is found through ``importlib.metadata`` entry points
(groups ``vqvdm.tokenizers``, ``vqvdm.denoisers``, ...). Listing reads names and distributions
only; a component's module is imported when the component is first used. A plug-in that fails
to import is reported as broken and breaks nothing else.

From Python, :func:`register` adds a class for this process only (an ablation without packaging).
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vqvdm_core.errors import ComponentError

GROUPS: dict[str, str] = {
    "tokenizer": "vqvdm.tokenizers",
    "denoiser": "vqvdm.denoisers",
    "schedule": "vqvdm.schedules",
    "sampler": "vqvdm.samplers",
    "conditioner": "vqvdm.conditioners",
    "guidance": "vqvdm.guidance",
    "metric": "vqvdm.metrics",
    "dataset": "vqvdm.datasets",
    "logger": "vqvdm.loggers",
    "quantizer": "vqvdm.quantizers",
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
        """First docstring line of the class, read from its source file without importing it."""
        doc = self.obj.__doc__ if self.obj is not None else static_docstring(self.target)
        return inspect.cleandoc(doc).splitlines()[0] if doc else ""


_NO_SOURCE_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES) + tuple(
    importlib.machinery.BYTECODE_SUFFIXES
)


def _module_file(module: str) -> tuple[Path | None, bool]:
    """``(source file, exists)`` of ``module`` on ``sys.path``, found WITHOUT importing it or its parents.

    Follows the import system's order: in each search location a regular package (a directory with
    ``__init__.py``) or a module file wins; a directory without ``__init__.py`` is a namespace-package
    portion, used only when no location holds a regular package or module of that name. ``exists`` is
    False only when the module certainly cannot be found; a module that exists without Python source
    (an extension module, bytecode only, a namespace package) gives ``(None, True)``.
    """
    parts = module.split(".")
    try:
        top = importlib.util.find_spec(parts[0])  # a top-level lookup executes nothing
    except (ImportError, ValueError):
        return None, False
    if top is None:
        return None, False
    if len(parts) == 1:
        origin = top.origin or ""
        return (Path(origin), True) if origin.endswith(".py") else (None, True)
    locations = list(top.submodule_search_locations or [])
    if not locations:  # a plain module has no submodules
        return None, False
    for i, part in enumerate(parts[1:], start=1):
        last = i == len(parts) - 1
        namespace: list[str] = []
        for loc in map(Path, locations):
            if (loc / part / "__init__.py").is_file():
                if last:
                    return loc / part / "__init__.py", True
                locations = [str(loc / part)]
                break
            if (loc / f"{part}.py").is_file():
                # A module: the target itself, or a parent that cannot hold submodules.
                return (loc / f"{part}.py", True) if last else (None, False)
            if any((loc / f"{part}{suffix}").is_file() for suffix in _NO_SOURCE_SUFFIXES):
                return None, True  # compiled: only an import can tell
            if (loc / part).is_dir():
                namespace.append(str(loc / part))
        else:
            if not namespace:
                return None, False
            if last:
                return None, True  # a namespace package has no source of its own
            locations = namespace
    return None, True


def _static_class(target: str) -> tuple[ast.ClassDef | None, str | None]:
    """Find the class ``module:Class`` by parsing source without importing: (node, problem)."""
    module, _, attr = target.partition(":")
    try:
        path, exists = _module_file(module)
        if not exists:
            return None, f"module '{module}' not found"
        if path is None:
            return None, None
        tree: ast.AST = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return None, f"SyntaxError in {exc.filename}:{exc.lineno}: {exc.msg}"
    except (OSError, ValueError, ImportError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    node: ast.AST = tree
    for name in attr.split("."):  # nested classes: Outer.Inner
        found = [n for n in getattr(node, "body", []) if isinstance(n, ast.ClassDef) and n.name == name]
        if not found:
            # It may be defined dynamically or re-exported: only an import can tell.
            return None, None
        node = found[-1]  # the last definition wins, as at run time
    return (node, None) if isinstance(node, ast.ClassDef) else (None, None)


def static_docstring(target: str) -> str | None:
    """Docstring of the class ``module:Class`` parsed from source, or None if it cannot be found."""
    node, _ = _static_class(target)
    return ast.get_docstring(node) if node is not None else None


_CHECK_MARK = "vqvdm-import-check "
_CHECK_IMPORTS = f"""
import importlib, json, os, sys
# Results go to a private copy of stdout (not inherited by processes a module starts); whatever a
# module prints goes to stderr instead, so it cannot garble a result line.
report = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
def say(*fields):
    report.write({_CHECK_MARK!r} + json.dumps(fields) + "\\n")
    report.flush()
for target in json.loads(sys.stdin.read()):
    say("begin", target)  # so that a death while importing it is blamed on it
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
        error = None
    except SystemExit as exc:
        error = "SystemExit: the module called sys.exit(%r) when imported" % (exc.code,)
    except BaseException as exc:
        error = "%s: %s" % (type(exc).__name__, exc)
    say("done", target, error)
os._exit(0)  # skip interpreter shutdown: threads or atexit handlers of a module cannot hang it
"""
"""The child of :meth:`Registry.check_imports`: marked JSON lines ``["begin", target]`` before, and
``["done", target, error]`` as soon as, each target is imported, flushed one by one."""


def _death(returncode: int) -> str:
    """Why a checking child that died while importing a module is gone, from its exit code."""
    if returncode < 0:
        try:
            import signal

            name = signal.Signals(-returncode).name
        except (ValueError, ImportError):
            name = str(-returncode)
        return (f"the import-check process was killed by signal {name} while importing it "
                "(a crash, e.g. a segfault in an extension module, or a signal)")
    return (f"the import-check process exited (code {returncode}) while importing it: "
            "os._exit, a crash or a signal")


def static_problem(target: str) -> str | None:
    """Why ``module:Class`` certainly cannot be imported, judged from source only (or None)."""
    return _static_class(target)[1]


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
            except SystemExit as exc:  # a plug-in that exits at import must not take this process down
                entry.error = f"SystemExit: the module called sys.exit({exc.code!r}) when imported"
                raise ComponentError(
                    f"{kind} '{name}' from {entry.provider} failed to import: {entry.error}"
                ) from None
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

    def check_imports(self, entries: Iterable[Entry], *, timeout: float = 60.0) -> dict[str, str | None]:
        """Import the targets of ``entries`` in a child process; ``target -> None`` (it imports) or
        its error. Nothing is imported here, so a module that raises, exits or hangs cannot harm
        this process. The child reports each target as soon as it is imported; if it dies while
        importing one (``os._exit``, a crash, a signal), that target gets an error saying so and a
        new child checks the targets not yet checked. Targets not reached within ``timeout``
        seconds in all (a module hangs) are left out. Normally this starts one child. Checks
        importability only (:meth:`load` also checks the interface)."""
        remaining = sorted({e.target for e in entries})
        results: dict[str, str | None] = {}
        if not remaining:
            return results
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        deadline = time.monotonic() + timeout
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            returncode: int | None = None
            try:
                proc = subprocess.run([sys.executable, "-c", _CHECK_IMPORTS], input=json.dumps(remaining),
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      timeout=left, env=env)
                output, returncode = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as exc:  # a module hangs: the rest stays unchecked
                output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            except OSError:  # no child could be started
                break
            begun: str | None = None
            for line in output.splitlines():
                if not line.startswith(_CHECK_MARK):
                    continue
                try:
                    step, target, *error = json.loads(line[len(_CHECK_MARK):])
                except (ValueError, TypeError):
                    continue
                if target not in remaining:
                    continue
                if step == "begin":
                    begun = target
                elif step == "done":
                    results[target] = error[0] if error else None
                    begun = None
            if returncode is None:
                break  # timed out
            if begun is not None and begun not in results:  # it died importing this one
                results[begun] = _death(returncode)
            unchecked = [t for t in remaining if t not in results]
            if len(unchecked) == len(remaining):
                break  # it died before reaching any target: another child would too
            remaining = unchecked
        return results

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


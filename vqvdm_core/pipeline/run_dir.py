"""The run directory ``runs/<name>/`` and the record each stage keeps in it.

Each stage writes ``runs/<name>/<stage>/stage.json`` holding the hash of the recipe parts it depends
on and its status. A stage whose record is ``done`` with a matching hash is skipped; one whose hash
differs is refused unless ``--force``; one left ``running`` (interrupted) or ``failed`` (with its
error) with a matching hash resumes. A process working in the run holds ``.lock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqvdm_core.errors import UserError, brief
from vqvdm_core.io.atomic import atomic_write
from vqvdm_core.io.paths import check_can_write
from vqvdm_core.recipe import Recipe, save_recipe

def __getattr__(name: str) -> Any:
    """``STAGE_HASH_PATHS`` and ``UPSTREAM``, derived from the stage declarations (kept for old imports;
    derived lazily since the stage modules import this one through ``context``)."""
    if name == "STAGE_HASH_PATHS":  # recipe parts each stage depends on (besides everything upstream)
        return {s.name: s.hash_paths for s in _stages()}
    if name == "UPSTREAM":
        return {s.name: s.upstream for s in _stages()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stages() -> tuple[Any, ...]:
    from vqvdm_core.pipeline.stages import ORDER

    return ORDER


class StageMismatchError(UserError):
    """A stage's outputs exist but were made by a different recipe."""


class RunLockedError(UserError):
    """Another process is working in the run directory."""


LOCK_FILE = ".lock"
"""Held (``flock``) by the process working in a run directory; names that process."""


def _read_holder(path: Path) -> dict[str, Any]:
    """What a lock file says about its holder (empty when unreadable or empty)."""
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stage_hash(recipe: Recipe, stage: str, cache: dict[str, str] | None = None) -> str:
    """Hash of the recipe parts ``stage`` depends on, chained with its upstream stage's hash.

    ``cache`` (stage name -> hash, for this ``recipe`` only) is read and filled, upstream stages included.
    """
    cache = {} if cache is None else cache
    if stage not in cache:
        from vqvdm_core.pipeline.stages import BY_NAME

        declared = BY_NAME[stage]
        own = recipe.hash(*declared.hash_paths)
        if declared.upstream is None:
            cache[stage] = own
        else:
            import hashlib

            up = stage_hash(recipe, declared.upstream, cache)
            cache[stage] = hashlib.sha256(f"{up}:{own}".encode()).hexdigest()[:16]
    return cache[stage]


@dataclass
class StageRecord:
    stage: str
    hash: str
    status: str  # "running" | "done" | "failed"
    started: float
    finished: float | None = None
    info: dict[str, Any] | None = None
    error: str | None = None


class _RunLogHandler(logging.FileHandler):
    """``run.log``: a line that cannot be written (a full disk) is dropped without the traceback that
    :mod:`logging` prints by default; the error that stopped the run is still the one message shown."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


class RunDir:
    """``<output_dir>/<name>/``: the resolved recipe, the run log and one folder per stage."""

    def __init__(self, recipe: Recipe, root: str | Path | None = None, *, path: str | Path | None = None):
        """The run folder is ``<root or recipe.output_dir>/<recipe.name>``, or ``path`` itself when given:
        a run folder copied or moved elsewhere (``cp -r runs/quickstart /scratch/qs-copy``) keeps its
        recipe, whose name then differs from the folder's."""
        self.recipe = recipe
        self._hashes: dict[str, str] = {}  # stage -> hash, each computed once for this recipe
        self.path = Path(path) if path is not None else Path(root if root is not None else recipe.output_dir) / recipe.name
        check_can_write(self.path, what="the run directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the run directory {self.path}: {exc.strerror or exc}") from None

    def stage_hash(self, stage: str) -> str:
        """This recipe's hash of ``stage`` (:func:`stage_hash`), computed once per run directory object."""
        return stage_hash(self.recipe, stage, self._hashes)

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def record(self, stage: str) -> StageRecord | None:
        """``stage``'s record; None when it has none or it cannot be read (:meth:`record_problem` says why)."""
        f = self.stage_dir(stage) / "stage.json"
        if not f.is_file():
            return None
        try:
            return StageRecord(**json.loads(f.read_text()))
        except (ValueError, TypeError):
            return None

    def record_problem(self, stage: str) -> str | None:
        """Why ``stage``'s ``stage.json`` exists but cannot be read as a record (None if it reads or is absent)."""
        f = self.stage_dir(stage) / "stage.json"
        if not f.is_file():
            return None
        try:
            data = json.loads(f.read_text())
        except ValueError as exc:  # not JSON, or not UTF-8 text
            return f"not JSON: {brief(exc)}"
        try:
            StageRecord(**data)
        except TypeError:
            return "not a stage record"
        return None

    def _write_record(self, rec: StageRecord) -> None:
        text = json.dumps(rec.__dict__, indent=2, default=str).encode()
        atomic_write(self.stage_dir(rec.stage) / "stage.json", lambda handle: handle.write(text), needed=len(text))

    def plan(self, stage: str, *, force: bool) -> str:
        """``"skip"`` (done and matching), ``"resume"``, or ``"start"``; refuse a mismatch."""
        want = self.stage_hash(stage)
        rec = self.record(stage)
        d = self.stage_dir(stage)
        if rec is None:
            problem = self.record_problem(stage)
            if problem and not force:
                raise StageMismatchError(
                    f"the record of stage '{stage}', {d / 'stage.json'}, is unreadable ({problem}); refusing to "
                    "overwrite the stage. Use --force to start the stage afresh."
                )
            if d.exists() and any(d.iterdir()) and not force:
                raise StageMismatchError(
                    f"{d} exists but has no stage record; refusing to overwrite it. "
                    "Use --force to start the stage afresh."
                )
            if d.exists() and force:
                shutil.rmtree(d)
            return "start"
        if rec.hash != want:
            if not force:
                raise StageMismatchError(
                    f"stage '{stage}' in {d} was made by a different recipe (hash {rec.hash}, this "
                    f"recipe {want}). Use --force to overwrite it, or change the run name."
                )
            shutil.rmtree(d)
            return "start"
        return "skip" if rec.status == "done" else "resume"  # running (interrupted) or failed

    def up_to_date(self, stage: str) -> bool:
        """True if ``stage`` is done by this recipe (what :meth:`plan` skips); never changes anything."""
        rec = self.record(stage)
        return rec is not None and rec.status == "done" and rec.hash == self.stage_hash(stage)

    def begin(self, stage: str) -> None:
        rec = self.record(stage)
        started = rec.started if rec is not None else time.time()
        self._write_record(StageRecord(stage, self.stage_hash(stage), "running", started))

    def finish(self, stage: str, info: dict[str, Any] | None = None) -> None:
        rec = self.record(stage)
        started = rec.started if rec is not None else time.time()
        self._write_record(StageRecord(stage, self.stage_hash(stage), "done", started,
                                       time.time(), info or {}))

    def fail(self, stage: str, error: str) -> None:
        """Mark ``stage`` failed with ``error``; a later run resumes it from its last checkpoint."""
        rec = self.record(stage)
        started = rec.started if rec is not None else time.time()
        self._write_record(StageRecord(stage, self.stage_hash(stage), "failed", started,
                                       time.time(), rec.info if rec is not None else None, error))

    @contextlib.contextmanager
    def lock(self, command: str = "vqvdm") -> Iterator[str | None]:
        """Hold the run directory for this process; yield the PID of a dead holder taken over, if any.

        Refuses (:class:`RunLockedError`, naming the holder's PID and command) while another live
        process holds it. The lock is an ``flock`` on ``.lock``, which the operating system releases
        when its process dies however it dies, so a lock left by a killed process is taken over.
        """
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unlocked
            yield None
            return
        path = self.path / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = _read_holder(path)
                raise RunLockedError(
                    f"{self.path} is in use by another process (PID {holder.get('pid', '?')}, "
                    f"{holder.get('command', 'vqvdm')}, since {holder.get('since', '?')}). Wait for it to "
                    "finish or stop it; two processes in one run directory would mix their outputs.") from None
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # the holder released and removed the file while we opened it: take the new one
        try:
            previous = _read_holder(path).get("pid")
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": platform.node(), "command": command,
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            try:
                yield str(previous) if previous not in (None, os.getpid()) else None
            finally:
                path.unlink(missing_ok=True)  # released cleanly: nothing stale left behind
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def require(self, stage: str) -> StageRecord:
        """The finished record of ``stage`` or a clear error saying to run it first."""
        rec = self.record(stage)
        problem = self.record_problem(stage) if rec is None else None
        if problem:
            raise UserError(f"the record of stage '{stage}', {self.stage_dir(stage) / 'stage.json'}, is unreadable "
                            f"({problem}); re-run the stage (vqvdm run RECIPE --stage {stage} --force)")
        if rec is None or rec.status != "done":
            raise UserError(f"stage '{stage}' has not finished in {self.path}; run it first "
                            f"(vqvdm run RECIPE --stage {stage})")
        if rec.hash != self.stage_hash(stage):
            raise StageMismatchError(
                f"stage '{stage}' in {self.path} was made by a different recipe; re-run it "
                f"(vqvdm run RECIPE --stage {stage} --force)"
            )
        return rec

    def write_recipe(self) -> Path:
        path = self.path / "recipe.yaml"
        save_recipe(self.recipe, path)
        return path

    def write_environment(self) -> None:
        import torch

        from vqvdm_core.runtime.backend_policy import current_policy

        env = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "backend_policy": current_policy(),
        }
        text = json.dumps(env, indent=2).encode()
        atomic_write(self.path / "environment.json", lambda handle: handle.write(text), needed=len(text))

    def logger(self) -> logging.Logger:
        """The run's logger, writing to ``run.log`` in the run directory."""
        target = str((self.path / "run.log").resolve())
        # One logger per run folder, not per run name: a copy of a run (same name, another folder)
        # used in the same process must not write into the original's run.log.
        log = logging.getLogger(f"vqvdm.run.{self.recipe.name}.{hashlib.sha1(target.encode()).hexdigest()[:10]}")
        log.setLevel(logging.INFO)
        if not any(getattr(h, "baseFilename", None) == target for h in log.handlers):
            handler = _RunLogHandler(target)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
        return log

"""A small JSON cache of what probing each video file found: ``(frames, fps, frame times)`` or why
it failed (the frame times only for a variable-frame-rate file, see :mod:`vqvdm_core.io.frame_times`).

Opening 13k UCF-101 files to read their frame counts takes a while; the answers are kept in one
JSON file per data set root, ``<cache dir>/probe-<hash of the root>.json``. An entry is trusted
only while the file's size and modification time are unchanged, so edited or replaced files are
probed again. The file is replaced atomically, so concurrent processes (DDP ranks) never read a
half-written cache; at worst two of them probe the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Union

from vqvdm_core.io.frame_times import FrameTimes

__all__ = ["ProbeCache", "ProbeResult", "default_cache_dir"]

ProbeResult = Union[tuple[int, float, Union[FrameTimes, None]], str]
"""``(num_frames, fps, frame times)`` of a readable video (the times None for a constant frame
rate), or the reason it is unusable."""

_VERSION = 2  # 2: frame times of variable-frame-rate files (files cached by 1 are probed again)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vqvdm`` when set, else ``~/.cache/vqvdm``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vqvdm"


class ProbeCache:
    """Probe results of the video files under ``root``, stored in ``directory``."""

    def __init__(self, root: Path, directory: Path | None = None):
        self.root = Path(root).resolve()
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        self.file = self.directory / f"probe-{digest}.json"
        self._entries: dict[str, dict] = {}
        self._dirty = False
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            return  # an unreadable cache is rebuilt, never trusted
        if isinstance(data, dict) and data.get("version") == _VERSION and data.get("root") == str(self.root):
            entries = data.get("entries")
            if isinstance(entries, dict):
                self._entries = entries

    def _key(self, path: Path) -> str:
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> ProbeResult | None:
        """The cached result for ``path``, or None when unknown or the file changed since."""
        entry = self._entries.get(self._key(path))
        stamp = self._stamp(path)
        result = None
        fresh = entry is not None and stamp is not None and [entry.get("size"), entry.get("mtime_ns")] == list(stamp)
        if fresh:
            result = self._result(entry)
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    @staticmethod
    def _result(entry: dict) -> ProbeResult | None:
        """What ``entry`` says; None for a damaged one (the file is probed again)."""
        if "error" in entry:
            return str(entry["error"])
        try:
            times = FrameTimes.from_json(entry["times"]) if "times" in entry else None
            return int(entry["frames"]), float(entry["fps"]), times
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, path: Path, result: ProbeResult) -> None:
        """Remember ``result`` for ``path`` (stamped with its current size and mtime)."""
        stamp = self._stamp(path)
        if stamp is None:
            return
        entry: dict = {"size": stamp[0], "mtime_ns": stamp[1]}
        if isinstance(result, str):
            entry["error"] = result
        else:
            entry["frames"], entry["fps"] = int(result[0]), float(result[1])
            if result[2] is not None:
                entry["times"] = result[2].to_json()
        self._entries[self._key(path)] = entry
        self._dirty = True

    def save(self) -> None:
        """Write the cache if anything changed; a cache that cannot be written only warns."""
        if not self._dirty:
            return
        data = {"version": _VERSION, "root": str(self.root), "entries": self._entries}
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=self.file.name, suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"could not write the video probe cache {self.file}: {exc} "
                          "(set the dataset's index_cache to a writable folder)", stacklevel=2)

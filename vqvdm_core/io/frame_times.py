"""When each frame of a variable-frame-rate video is shown: its frames' presentation times, in order.

A constant-rate stream needs none of this: frame ``n`` is shown at ``start + n / fps``, and a reader
seeks by that arithmetic. A variable-frame-rate stream (a pause, as phone and screen recordings
have) breaks it: after a 2 s pause in an 8 fps stream, ``time * fps`` overshoots the frame's index
by 16. :class:`FrameTimes` holds the real times, so frame ``n`` (the ``n``-th frame in presentation
order, as stored) is found by its own time (:meth:`~FrameTimes.pts_of`) and a decoded frame's time
tells its index (:meth:`~FrameTimes.index_of`).

The times are kept as runs of equal steps, so a stream with one pause is two runs of three numbers
and the probe cache (:mod:`vqvdm_core.data.probe_cache`) stays small; a jittery phone recording
keeps about one run per frame. :func:`vqvdm_core.io.video.probe_frame_times` reads them from a
file's packets.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

__all__ = ["FrameTimes"]


@dataclass(frozen=True)
class FrameTimes:
    """Presentation times (``pts`` in ``time_base`` units) of a stream's frames, in order.

    ``runs`` are ``(first pts, step, count)``: ``count`` frames at ``first``, ``first + step``, ...
    """

    time_base: Fraction
    runs: tuple[tuple[int, int, int], ...]

    @classmethod
    def from_pts(cls, pts: Sequence[int], *, time_base: Fraction) -> FrameTimes:
        """The times of frames shown at ``pts`` (strictly increasing; ``ValueError`` otherwise)."""
        if any(b <= a for a, b in zip(pts, pts[1:])):
            raise ValueError("frame times must be strictly increasing")
        runs: list[tuple[int, int, int]] = []
        i = 0
        while i < len(pts):
            step = pts[i + 1] - pts[i] if i + 1 < len(pts) else 0
            count = 1
            while i + count < len(pts) and pts[i + count] - pts[i + count - 1] == step:
                count += 1
            runs.append((int(pts[i]), int(step), count))
            i += count
        return cls(Fraction(time_base), tuple(runs))

    def __len__(self) -> int:
        return self._run_starts[-1] if self.runs else 0

    @cached_property
    def _run_starts(self) -> list[int]:
        """Index of the first frame of each run, then the frame count."""
        starts = [0]
        for _, _, count in self.runs:
            starts.append(starts[-1] + count)
        return starts

    @cached_property
    def _run_firsts(self) -> list[int]:
        return [first for first, _, _ in self.runs]

    def pts_of(self, index: int) -> int:
        """The time of frame ``index`` (``IndexError`` outside ``0 .. len - 1``)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of a stream of {len(self)} frames")
        run = bisect.bisect_right(self._run_starts, index) - 1
        first, step, _ = self.runs[run]
        return first + (index - self._run_starts[run]) * step

    def index_of(self, pts: int) -> int | None:
        """The index of the frame shown at ``pts``; None when no frame is."""
        run = bisect.bisect_right(self._run_firsts, pts) - 1
        if run < 0:
            return None
        first, step, count = self.runs[run]
        offset = pts - first
        if offset == 0:
            return self._run_starts[run]
        if step <= 0 or offset % step or offset // step >= count:
            return None
        return self._run_starts[run] + offset // step

    @property
    def rate(self) -> float | None:
        """Frames per second while the stream runs: one over the median time between frames
        (a pause does not lower it, unlike ``frames / duration``); None for a single frame."""
        gaps: list[tuple[int, int]] = []  # (step, how many frames follow one) of every interval
        for k, (first, step, count) in enumerate(self.runs):
            if count > 1:
                gaps.append((step, count - 1))
            if k + 1 < len(self.runs):
                gaps.append((self.runs[k + 1][0] - (first + (count - 1) * step), 1))
        total = sum(n for _, n in gaps)
        if not total:
            return None
        seen = 0
        for step, n in sorted(gaps):
            seen += n
            if 2 * seen >= total:
                return float(1 / (step * self.time_base))
        raise AssertionError("unreachable")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (:meth:`from_json` reads it back)."""
        return {"time_base": str(self.time_base), "runs": [list(run) for run in self.runs]}

    @classmethod
    def from_json(cls, data: Any) -> FrameTimes:
        """Read :meth:`to_json`'s form; ``ValueError`` when it is not one."""
        try:
            runs = tuple((int(a), int(b), int(c)) for a, b, c in data["runs"])
            time_base = Fraction(data["time_base"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"not frame times: {exc}") from exc
        if time_base <= 0 or any(count < 1 or step < 0 for _, step, count in runs):
            raise ValueError("not frame times: bad time base or run")
        return cls(time_base, runs)

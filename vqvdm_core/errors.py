"""Errors a user can act on.

Anything raised as a :class:`UserError` (a bad recipe, a missing file, an unknown component) is
shown by the CLI as one clear message with a non-zero exit and no traceback; ``VQVDM_DEBUG=1``
shows the traceback too.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix; its message says what and how.

    Exit codes (every command): 2 for a usage or input error (a bad option, recipe, file or
    setting; a run directory in use), 1 for a failure of the work itself (:class:`WorkFailure`,
    e.g. a loss that became NaN; also any unexpected exception), 130 when interrupted.
    """

    exit_code = 2


class WorkFailure(UserError):
    """The input was fine but the work failed (e.g. training diverged): exit code 1."""

    exit_code = 1


class RecipeError(UserError):
    """A recipe that does not validate. ``problems`` lists every ``(path, message)`` found."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None):
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{where}{len(problems)} problem(s) in the recipe:"] if len(problems) > 1 else []
        lines += [f"{where if len(problems) == 1 else '  '}{path}: {msg}" if path else f"{where}{msg}"
                  for path, msg in problems]
        super().__init__("\n".join(lines))


class ComponentError(UserError):
    """An unknown, broken, duplicate or non-conforming component."""


class MissingFileError(UserError):
    """A data set, checkpoint or weight file that is not where the recipe says."""


def missing_file_messages(find: Callable[[], object]) -> list[str]:
    """``[]`` if ``find()`` succeeds, else the message of the :class:`MissingFileError` it raises:
    a component's ``missing_files`` from the function that finds its file."""
    try:
        find()
    except MissingFileError as exc:
        return [str(exc)]
    return []


def brief(exc: BaseException, *, lines: int = 1, limit: int = 300) -> str:
    """The first ``lines`` lines of an exception's text (e.g. a long ``load_state_dict`` error),
    joined and cut to ``limit`` characters; the exception's type name when it has no text."""
    text = " ".join(str(exc).strip().splitlines()[:lines]) or type(exc).__name__
    return text[:limit]


_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
                            r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def state_dict_mismatch(exc: BaseException, *, limit: int = 3) -> str:
    """A ``load_state_dict`` error (one line per mismatching tensor, hundreds for a large model) as one
    line: the first ``limit`` problems and how many more, e.g. ``size mismatch for conv.weight (file
    [16, 3], model [8, 3]), ... and 176 more``."""
    problems = []
    for line in str(exc).strip().splitlines()[1:] or str(exc).strip().splitlines():
        line = line.strip()
        match = _SIZE_MISMATCH.search(line)
        if match:
            line = f"size mismatch for {match[1]} (file {match[2]}, model {match[3]})"
        if line:
            problems.append(line[:200])
    if not problems:
        return type(exc).__name__
    more = f" and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more

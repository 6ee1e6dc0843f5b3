"""Warnings raised while a run works: shown and written to run.log, each text once."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

from vqvdm_core.pipeline import _warnings_to_log


def _warn_here(text: str) -> None:
    warnings.warn(text, UserWarning, stacklevel=1)


def test_the_same_warning_from_two_places_is_shown_and_logged_once(caplog):
    logger = logging.getLogger("vqvdm.test.run")
    ctx = SimpleNamespace(log=logger)
    shown: list[str] = []
    with caplog.at_level(logging.WARNING, logger="vqvdm.test.run"), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))  # the terminal
        with _warnings_to_log(ctx):  # type: ignore[arg-type]
            _warn_here("skipping clips/v0 (unreadable); another video stands in")  # training clips
            warnings.warn("skipping clips/v0 (unreadable); another video stands in", UserWarning)  # validation
            _warn_here("a different warning")
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["UserWarning: skipping clips/v0 (unreadable); another video stands in",
                      "UserWarning: a different warning"]
    assert shown == ["skipping clips/v0 (unreadable); another video stands in", "a different warning"]

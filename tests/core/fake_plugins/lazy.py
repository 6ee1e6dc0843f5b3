"""A module only the lazy-listing test names: importing it is observable in ``sys.modules``."""

from __future__ import annotations

from fake_plugins.components import TinySchedule


class LazySchedule(TinySchedule):
    """Schedule whose module must stay unimported while the registry only lists it."""

    class Config(TinySchedule.Config):
        pass

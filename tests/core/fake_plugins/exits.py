"""A plug-in module that calls sys.exit() when imported (it must not take a listing down)."""

import sys

sys.exit(3)


class Exits:  # pragma: no cover - the import exits above
    """Never reached."""

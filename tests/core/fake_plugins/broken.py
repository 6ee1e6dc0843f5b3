"""A plug-in module that fails to import, like one whose optional dependency is missing."""

raise ImportError("fake_plugins.broken needs the package 'libfoo' (pip install libfoo)")


class NeverDefined:  # pragma: no cover - the import fails above
    """Never reached."""

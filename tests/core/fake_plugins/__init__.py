"""Importable helper modules for the registry and recipe tests.

Entry points in the tests name classes here (``fake_plugins.components:TinySchedule``), exactly as
an installed plug-in's entry points name its classes. ``tests/core/conftest.py`` puts
``tests/core`` on ``sys.path`` so that ``fake_plugins`` imports.
"""

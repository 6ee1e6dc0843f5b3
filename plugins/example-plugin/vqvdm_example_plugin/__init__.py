"""An example third-party plug-in for vqvdm: the ``temporal_flicker`` metric.

vqvdm finds it through the ``vqvdm.metrics`` entry point declared in this distribution's
``pyproject.toml``; nothing here is imported until a recipe or ``create("metric",
"temporal_flicker")`` uses it.
"""

from vqvdm_example_plugin.temporal_flicker import TemporalFlicker

__all__ = ["TemporalFlicker"]
__version__ = "0.1.0"

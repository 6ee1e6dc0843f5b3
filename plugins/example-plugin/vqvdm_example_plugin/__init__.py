"""An example third-party plug-in for vqvdm: the ``temporal_flicker`` metric and the ``heun`` sampler.

vqvdm finds them through the ``vqvdm.metrics`` and ``vqvdm.samplers`` entry points declared in this
distribution's ``pyproject.toml``; nothing here is imported until a recipe or ``create("metric",
"temporal_flicker")`` / ``create("sampler", "heun")`` uses it.
"""

from vqvdm_example_plugin.heun import Heun
from vqvdm_example_plugin.temporal_flicker import TemporalFlicker

__all__ = ["Heun", "TemporalFlicker"]
__version__ = "0.1.0"

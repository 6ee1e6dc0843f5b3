"""An example third-party plug-in for vqvdm: the ``temporal_flicker`` metric, the ``heun`` sampler,
the ``motion`` conditioner (a condition field of its own) and the ``motion_clips`` data set.

vqvdm finds them through the ``vqvdm.metrics``, ``vqvdm.samplers``, ``vqvdm.conditioners`` and
``vqvdm.datasets`` entry points declared in this distribution's ``pyproject.toml``; nothing here is
imported until a recipe or ``create("metric", "temporal_flicker")`` / ``create("sampler", "heun")``
uses it.
"""

from vqvdm_example_plugin.heun import Heun
from vqvdm_example_plugin.motion import MotionClips, MotionConditioner
from vqvdm_example_plugin.temporal_flicker import TemporalFlicker

__all__ = ["Heun", "MotionClips", "MotionConditioner", "TemporalFlicker"]
__version__ = "0.1.0"

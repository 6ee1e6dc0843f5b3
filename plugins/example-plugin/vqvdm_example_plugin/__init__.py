"""An example third-party plug-in for vqvdm: the ``temporal_flicker`` metric, the ``cosine_path`` schedule,
the ``motion`` conditioner (a condition field of its own), the ``motion_clips`` data set and the
``latte_diffusers`` denoiser (diffusers' Latte, wrapped; diffusers is the optional extra ``latte``).

vqvdm finds them through the ``vqvdm.metrics``, ``vqvdm.schedules``, ``vqvdm.conditioners``,
``vqvdm.datasets`` and ``vqvdm.denoisers`` entry points declared in this distribution's
``pyproject.toml``; nothing here is imported until a recipe or ``create("metric", "temporal_flicker")``
/ ``create("schedule", "cosine_path")`` uses it, and diffusers not until ``latte_diffusers`` is built.
"""

from vqvdm_example_plugin.cosine_path import CosinePath
from vqvdm_example_plugin.latte import LatteDenoiser
from vqvdm_example_plugin.motion import MotionClips, MotionConditioner
from vqvdm_example_plugin.temporal_flicker import TemporalFlicker

__all__ = ["CosinePath", "LatteDenoiser", "MotionClips", "MotionConditioner", "TemporalFlicker"]
__version__ = "0.1.0"

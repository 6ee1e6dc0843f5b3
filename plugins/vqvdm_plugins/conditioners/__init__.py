"""Conditioners: FPS (paper Eq. 6, ``fps``) and class label with a null class (``class``).

Each turns one batch field into an embedding that is added to the denoiser's time-step embedding,
and owns its null value and its condition dropout (paper Eqs. 7-8).
"""

from vqvdm_plugins.conditioners.class_label import ClassConditioner
from vqvdm_plugins.conditioners.fps import FPSConditioner

__all__ = ["ClassConditioner", "FPSConditioner"]

"""Guidance: classifier-free guidance (``cfg``, paper Eq. 9) and no guidance (``none``)."""

from vqvdm_plugins.guidance.cfg import ClassifierFreeGuidance
from vqvdm_plugins.guidance.no_guidance import NoGuidance

__all__ = ["ClassifierFreeGuidance", "NoGuidance"]

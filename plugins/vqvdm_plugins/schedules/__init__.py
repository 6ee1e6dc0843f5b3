"""Noise schedules: standard DDPM (``ddpm``) with respaced ancestral and DDIM samplers."""

from vqvdm_plugins.schedules.ddpm import DDPMSchedule

__all__ = ["DDPMSchedule"]

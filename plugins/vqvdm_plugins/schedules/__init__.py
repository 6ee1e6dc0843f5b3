"""Noise schedules: standard DDPM (``ddpm``), the forward process and its respaced chains."""

from vqvdm_plugins.schedules.ddpm import DDPMSchedule

__all__ = ["DDPMSchedule"]

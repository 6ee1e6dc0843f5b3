"""Sampler plug-ins: ancestral DDPM (``ddpm``), DDIM (``ddim``) and DPM-Solver++(2M) (``dpmpp_2m``).

Each is a small class over a :class:`~vqvdm_core.interfaces.sampler.SamplingChain` and a ``denoise(x, i) ->
(x0, eps)`` function, written from its paper's formulas; they work for epsilon, x0 and v denoisers
alike because the schedule turns every prediction into both estimates.
"""

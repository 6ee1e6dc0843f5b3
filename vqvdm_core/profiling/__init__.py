"""Measuring: the toolkit (:mod:`~vqvdm_core.profiling.measure`: FLOPs, peak memory, timers, the
precision probe; used by ``benchmarks/``) and the paper's Table 3 experiment behind ``vqvdm bench``
(:mod:`~vqvdm_core.profiling.table3`)."""

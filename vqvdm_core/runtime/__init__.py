"""The process a command runs in: devices and precision (:mod:`~vqvdm_core.runtime.devices`),
several processes under ``torchrun`` (:mod:`~vqvdm_core.runtime.distributed`), seeds and random
state (:mod:`~vqvdm_core.runtime.seeding`) and progress lines of long loops
(:mod:`~vqvdm_core.runtime.progress`)."""

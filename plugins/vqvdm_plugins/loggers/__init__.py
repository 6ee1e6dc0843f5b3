"""Experiment loggers: ``csv`` (no dependency), ``tensorboard`` (``vqvdm[tensorboard]``) and ``wandb``
(``vqvdm[wandb]``).

The modules are not imported here: each one that needs an optional package checks for it when it
is imported, so a missing package breaks only its own logger.
"""

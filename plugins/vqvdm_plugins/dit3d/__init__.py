"""A Latte-style factorised video transformer denoiser (``dit3d``), beside the paper's U-Net.

Files, one concept each: ``dit.py`` (the registered :class:`DiT3D`, Latte's variants), ``block.py``
(the adaLN-Zero transformer block), ``attention.py`` (spatial and causal temporal attention over
tokens), ``modulation.py`` (adaLN-Zero), ``patches.py`` (latent patches in and out),
``positions.py`` (2D sin-cos positions), ``presets.py`` (the published S / B / L / XL sizes).
"""

from vqvdm_plugins.dit3d.dit import DiT3D

__all__ = ["DiT3D"]

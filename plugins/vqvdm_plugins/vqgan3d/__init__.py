"""The paper's 3D VQGAN tokenizer (registered as ``vqgan3d``) and its building blocks.

The registry imports :class:`~vqvdm_plugins.vqgan3d.tokenizer.VQGAN3D` through its entry point;
this package file stays light so that listing components imports nothing heavy.
"""

"""The paper's denoiser: a factorized 3D U-Net with causal temporal attention (``unet3d``).

Files, one concept each: ``unet.py`` (the registered :class:`UNet3D`), ``block.py`` (residual block
+ spatial attention + temporal attention), ``residual_block.py``, ``spatial_attention.py``,
``temporal_attention.py`` (causal, rotary positions), ``resample.py`` (down/upsampling),
``padding.py`` (temporal replicate padding), ``conv_gemm.py`` (the deepest level's convolutions as
one matrix multiply on the CPU). Speed notes and measurements: ``docs/performance.md``.
"""

from vqvdm_plugins.unet3d.unet import UNet3D

__all__ = ["UNet3D"]

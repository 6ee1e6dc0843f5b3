"""Where the vector quantizer lived before quantizers were plug-ins: it is now the ``vq`` quantizer,
:mod:`vqvdm_plugins.quantizers.vq` (imports from here keep working)."""

from vqvdm_plugins.quantizers.vq import QuantizerOutput, VectorQuantizer

__all__ = ["QuantizerOutput", "VectorQuantizer"]

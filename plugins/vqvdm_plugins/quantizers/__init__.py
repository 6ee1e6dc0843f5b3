"""The default quantizers (entry-point group ``vqvdm.quantizers``): ``vq`` (the paper's codebook),
``fsq`` (finite scalar quantization), ``lfq`` (lookup-free, MAGVIT-v2) and ``kl`` (a continuous
Gaussian posterior). A tokenizer takes one as a node: ``tokenizer: {name: vqgan3d, quantizer:
{name: fsq, levels: [8, 5, 5, 5]}}``. This package file stays light: the registry imports each
class through its entry point."""

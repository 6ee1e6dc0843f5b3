"""Evaluation metrics (registered under ``vqvdm.metrics``): the paper's protocol and two probes.

- ``fvd`` (:mod:`.fvd`), ``kvd`` (:mod:`.kvd`): I3D (Kinetics-400) feature distances against a real set
  whose features can be cached (:mod:`.reference_cache`);
- ``is`` (:mod:`.inception_score`): video Inception Score with the UCF-101 C3D;
- ``reconstruction`` (:mod:`.reconstruction`): PSNR, SSIM and LPIPS of a tokenizer's reconstructions;
- ``motion_probe`` (:mod:`.motion_probe`): direction/speed/persistence of ``synthetic_motion`` samples.

Building blocks: :mod:`.frechet` (Gaussian fits, Fréchet distance), :mod:`.mmd` (polynomial MMD),
:mod:`.i3d` and :mod:`.c3d` (architectures), :mod:`.feature_networks` (weight files, loading,
preprocessing). Protocols and weight files are described in ``docs/metrics.md``.

Nothing heavy is imported here, so listing components stays fast.
"""

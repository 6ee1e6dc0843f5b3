"""Files in and out: video files (:mod:`~vqvdm_core.io.video`), the uint8 <-> [-1, 1] pixel
conversion (:mod:`~vqvdm_core.io.pixels`), output paths checked before any work
(:mod:`~vqvdm_core.io.paths`), files written complete or not at all (:mod:`~vqvdm_core.io.atomic`),
the SHA-256 records of checkpoints and weights (:mod:`~vqvdm_core.io.checksum`) and where feature-network weight files are found (:mod:`~vqvdm_core.io.weights`)."""

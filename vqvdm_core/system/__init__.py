"""The latent video diffusion system and what it does beyond composing components.

* :mod:`~vqvdm_core.system.diffusion`: :class:`LatentVideoDiffusion` (tokenizer + denoiser +
  schedule + conditioners + guidance: training on latents, guided sampling) and
  :func:`build_system`, which builds one from a recipe, wiring derived fields (:data:`WIRED_FIELDS`);
* :mod:`~vqvdm_core.system.long_video`: window plans, known-frame conditioning and chunked decoding
  (long videos, continuations);
* :mod:`~vqvdm_core.system.pretrained`: pipeline folders (``save_pretrained`` / ``from_pretrained``).

The names of :mod:`~vqvdm_core.system.diffusion` are re-exported here (import from here).
"""

from __future__ import annotations

from vqvdm_core.system.diffusion import (
    WIRED_FIELDS,
    EmbedMode,
    LatentVideoDiffusion,
    build_system,
    known_input,
    known_input_of_lengths,
    known_lengths,
    known_prefix,
)

__all__ = [
    "EmbedMode",
    "LatentVideoDiffusion",
    "WIRED_FIELDS",
    "build_system",
    "known_input",
    "known_input_of_lengths",
    "known_lengths",
    "known_prefix",
]

"""The quantizer interface: what a tokenizer's encoder output becomes before the decoder and the
diffusion model see it (a codebook vector, a point of a scalar grid, a binary code, or a sample of a
continuous posterior)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["Quantized", "Quantizer"]


@dataclass
class Quantized:
    """What :meth:`Quantizer.forward` returns.

    ``latent``: ``(B, c, t, h, w)``, what the decoder and the diffusion model see, with the gradient
    to the encoder the quantizer's paper prescribes (straight through for VQ, FSQ and LFQ; the
    reparameterised sample for a KL posterior). ``loss``: the auxiliary loss, already weighted by
    the quantizer's own weights (VQ: codebook + beta x commitment; LFQ: commitment + entropy; KL:
    kl_weight x KL), a scalar the tokenizer adds to its objective as its ``vq_weight`` says (0 when
    there is none, as for FSQ). ``stats``: detached scalars logged as they are named (``perplexity``,
    ``codes_in_use``, ``entropy``, ``kl``...). ``indices``: ``(B, t, h, w)`` code indices where the
    latent is one of finitely many codes, else None.
    """

    latent: Tensor
    loss: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)
    indices: Tensor | None = None


class Quantizer(Configurable, nn.Module):
    """Maps an encoder output ``(B, input_channels, t, h, w)`` to a latent ``(B, latent_channels, t, h, w)``.

    A quantizer is a component of its own kind (entry-point group ``vqvdm.quantizers``); a tokenizer
    takes one as a node (``tokenizer: {name: vqgan3d, quantizer: {name: fsq, levels: [8, 5, 5, 5]}}``).
    In training mode (``self.training``) a stochastic quantizer samples; in eval mode (encoding for the
    latents stage) it is deterministic. ``forward(..., update=True)`` may also update its state (a
    codebook's EMA, dead codes); without it, nothing changes.
    """

    kind: ClassVar[str] = "quantizer"

    @property
    @abc.abstractmethod
    def latent_channels(self) -> int:
        """Channels ``c`` of the latent it returns."""

    @property
    def input_channels(self) -> int:
        """Channels the encoder must output (a Gaussian posterior needs a mean and a log-variance per
        latent channel: twice ``latent_channels``). Default: ``latent_channels``."""
        return self.latent_channels

    @property
    def bits_per_position(self) -> float | None:
        """Bits a latent position carries (``log2`` of the number of codes); None for a continuous latent."""
        return None

    @abc.abstractmethod
    def forward(self, z: Tensor, *, update: bool = False) -> Quantized:
        """Quantize the encoder output ``z``; ``update``: run the training-time state updates."""

    def snap(self, latent: Tensor) -> Tensor:
        """``latent`` ``(B, c, t, h, w)`` (e.g. a diffusion sample) moved onto the quantizer's grid, with
        no gradient and no state change: what a tokenizer's ``decode(..., quantize=True)`` decodes.
        Default (a continuous latent): unchanged."""
        return latent

"""The tokenizer interface: video to a compact latent and back."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor, nn

from vqvdm_core.interfaces.configurable import ComponentConfig, Configurable
from vqvdm_core.interfaces.training import Trainable

__all__ = ["VideoTokenizer"]


class VideoTokenizer(Configurable, nn.Module, Trainable):
    """Maps video to a compact latent and back.

    ``encode``: ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, c, T/ft, H/fs, W/fs)``.
    ``decode``: any latent of that shape (a diffusion sample need not lie on a codebook) -> video.
    """

    kind: ClassVar[str] = "tokenizer"

    pixel_space: ClassVar[bool] = False
    """True for a tokenizer whose latent is the video itself (no compression): ``vqvdm bench``
    builds the pixel-space twin of a recipe with the registered tokenizer that says so."""

    @property
    @abc.abstractmethod
    def latent_channels(self) -> int:
        """Channels ``c`` of the latent."""

    @abc.abstractmethod
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of the latent of a ``frames x height x width`` clip."""

    @abc.abstractmethod
    def encode(self, video: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, c, t, h, w)`` (quantized, for a VQ tokenizer)."""

    @abc.abstractmethod
    def decode(self, latent: Tensor) -> Tensor:
        """``(B, c, t, h, w)`` -> ``(B, 3, T, H, W)`` in roughly [-1, 1]."""

    @property
    def trainable(self) -> bool:
        """False for tokenizers with nothing to learn (``identity``): the tokenizer stage is skipped."""
        return any(p.requires_grad for p in self.parameters())

    def inference_config(self) -> ComponentConfig:
        """This tokenizer's config with what only training uses switched off (loss networks, a
        discriminator), encoding and decoding unchanged. An exported pipeline
        (:mod:`vqvdm_core.system.pretrained`) stores the tokenizer with this config and only the weights a
        tokenizer built from it has, so it carries no training-only weights. Default: the config as is."""
        return self.config

    @property
    def decode_context(self) -> int | None:
        """Latent frames on each side that a decoded frame depends on, or None when unbounded/unknown.

        With a number ``r``, a long latent may be decoded in temporal chunks, each widened by ``r``
        latent frames on both sides and cropped, and give the same video as one whole decode (the
        memory of a long video's decode stays that of one chunk). None (the default: e.g. a decoder
        with GroupNorm, whose statistics span every frame) means only a whole decode is exact.
        """
        return None

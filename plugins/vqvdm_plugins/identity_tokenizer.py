"""``identity``: the tokenizer that does nothing, turning VQ-VDM into pixel-space VDM.

The latent is the video itself (3 channels, factors 1), so a recipe that says
``tokenizer: {name: identity}`` trains the denoiser on pixels: the paper's VDM baseline (Table 3) is
one recipe line away. It has no parameters; the pipeline skips its training stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from vqvdm_core.interfaces import TrainStep, VideoTokenizer
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["IdentityTokenizer"]


class IdentityTokenizer(VideoTokenizer):
    """Pixels as the latent (no compression): the pixel-space VDM baseline."""

    pixel_space = True

    class Config(ComponentConfig):
        pass

    @property
    def latent_channels(self) -> int:
        return 3

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (3, frames, height, width)

    def encode(self, video: Tensor) -> Tensor:
        """The video itself, ``(B, 3, T, H, W)``."""
        return video

    def decode(self, latent: Tensor) -> Tensor:
        """The latent itself, which is a video ``(B, 3, T, H, W)``."""
        if latent.shape[1] != 3:
            raise ValueError(f"the identity tokenizer's latent is RGB video; got {latent.shape[1]} channels")
        return latent

    @property
    def decode_context(self) -> int:
        """0: every frame decodes on its own."""
        return 0

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """No parameters, so no optimizer groups."""
        return {}

    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        """Nothing to learn: no losses (``trainable`` is False and the tokenizer stage is skipped)."""
        return TrainStep(losses={}, logs={})

"""``kl``: a continuous latent with a diagonal Gaussian posterior, as LDM's KL autoencoders (Rombach et al.
2022; the VAE of LVDM, CogVideoX, Wan, LTX-Video).

The encoder outputs a mean and a log-variance per latent channel (``2c`` channels); in training the
latent is a reparameterised sample ``mu + sigma eps`` and the loss is ``kl_weight`` times the KL
divergence to ``N(0, I)``,

    KL = 1/2 sum_(c, t, h, w) (mu^2 + sigma^2 - 1 - log sigma^2),   averaged over the batch

(LDM's ``DiagonalGaussianDistribution.kl``, with its log-variance clamp to [-30, 20] and its weight
1e-6). In eval mode, as when the latents stage encodes the data, the latent is the posterior mean.
There is no grid: ``snap`` leaves a latent as it is, and bits per position are undefined.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import ComponentConfig, Quantized, Quantizer
from vqvdm_core.runtime.distributed import draw_for_global_batch

__all__ = ["KLPosterior"]

LOGVAR_RANGE = (-30.0, 20.0)
"""LDM's clamp of the log-variance, which keeps ``exp`` finite early in training."""


class KLPosterior(Quantizer):
    """Diagonal Gaussian posterior ``(B, 2c, t, h, w)`` (mean, log-variance) -> latent ``(B, c, t, h, w)``."""

    class Config(ComponentConfig):
        channels: int | None = Field(None, ge=1, description="latent channels c (the encoder outputs 2c); null: "
                                     "wired from the tokenizer's latent_channels")
        kl_weight: float = Field(1e-6, ge=0, description="weight of the KL term (LDM: 1e-6)")
        sample: bool = Field(True, description="sample the posterior in training (false: the mean, a plain "
                             "autoencoder with a KL penalty)")

    config: Config

    def __init__(self, config: "KLPosterior.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        if self.config.channels is None:
            raise ValueError("kl quantizer: channels is not set; a tokenizer wires it from its latent_channels")

    @property
    def latent_channels(self) -> int:
        return int(self.config.channels)  # type: ignore[arg-type]

    @property
    def input_channels(self) -> int:
        return 2 * self.latent_channels

    def posterior(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log-variance)`` of ``z`` ``(B, 2c, t, h, w)``, each ``(B, c, t, h, w)`` float32."""
        if z.shape[1] != self.input_channels:
            raise ValueError(f"kl: the encoder output has {z.shape[1]} channels; a posterior of {self.latent_channels} "
                             f"latent channels needs {self.input_channels} (mean and log-variance)")
        mean, logvar = z.float().chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def forward(self, z: Tensor, *, update: bool = False) -> Quantized:
        with torch.autocast(device_type=z.device.type, enabled=False):
            mean, logvar = self.posterior(z)
            if self.training and self.config.sample:
                # Drawn for the global batch, so that 1 or N processes draw the same noise per clip.
                noise = draw_for_global_batch(
                    lambda n: torch.randn((n, *mean.shape[1:]), device=mean.device), mean.shape[0])
                latent = mean + torch.exp(0.5 * logvar) * noise
            else:
                latent = mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
        stats = {"kl": kl.detach(), "posterior_std": torch.exp(0.5 * logvar).mean().detach()}
        return Quantized(latent=latent.to(z.dtype), loss=self.config.kl_weight * kl, stats=stats)

"""The paper's "lightweight" video discriminator: 3D convolutions that downsample at every layer.

Paper Sec. 2.2: "a lightweight design, consisting of a 3D convolution that downsamples in all
layers", whose intermediate features feed the feature-matching loss (Eq. 4). Each layer is a
stride-2 convolution (kernel 3 in time, 4 in space; time stops shrinking at one frame), GroupNorm
(not on the first layer; per-sample, so real and fake clips in one batch do not mix statistics) and
LeakyReLU(0.2), as in the PatchGAN discriminators of taming-transformers and TATS. The last layer
is a stride-2 convolution to one channel: a map of real/fake logits.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqvdm_plugins.vqgan3d.residual_block import group_norm

__all__ = ["VideoDiscriminator"]


class VideoDiscriminator(nn.Module):
    """``(B, 3, T, H, W)`` -> ``(logits (B, 1, T', H / 2^L, W / 2^L), [features of each hidden layer])``.

    ``num_layers`` hidden layers of width ``channels * min(2^i, 8)``, then the logit layer; ``H`` and
    ``W`` must be divisible by ``2^(num_layers + 1)``.
    """

    def __init__(self, *, in_channels: int = 3, channels: int = 64, num_layers: int = 3,
                 norm_groups: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for i in range(num_layers):
            width = channels * min(2 ** i, 8)
            layers.append(nn.Sequential(
                nn.Conv3d(width_in, width, kernel_size=(3, 4, 4), stride=2, padding=1),
                group_norm(width, norm_groups) if i > 0 else nn.Identity(),
                nn.LeakyReLU(0.2),
            ))
            width_in = width
        self.layers = nn.ModuleList(layers)
        self.to_logits = nn.Conv3d(width_in, 1, kernel_size=(3, 4, 4), stride=2, padding=1)

    def forward(self, video: Tensor) -> tuple[Tensor, list[Tensor]]:
        features: list[Tensor] = []
        h = video
        for layer in self.layers:
            h = layer(h)  # (B, C_i, ceil(T / 2), H / 2, W / 2)
            features.append(h)
        return self.to_logits(h), features

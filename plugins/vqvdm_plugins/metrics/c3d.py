"""C3D (Tran et al. 2015), the UCF-101 classifier of the video Inception Score.

The field's IS network is the Caffe C3D trained on Sports-1M and fine-tuned on UCF-101, as converted
by TGAN2 (pfnet-research, ``c3d_ucf101.py``) and ported to TorchScript by StyleGAN-V
(``c3d_ucf101.pt``, loaded by :mod:`.feature_networks`). This file defines the same network as a
plain module whose state dict uses TGAN2's layer names (``conv1a`` ... ``conv5b``, ``fc6``..``fc8``),
for users who hold those weights as a state dict.

Layout (16x112x112 input): 8 conv layers 3x3x3 (pad 1, ReLU), max pools ``pool1`` 1x2x2 then 2x2x2,
``fc6`` (``512*4*4`` -> 4096), ``fc7`` (4096), ``fc8`` (101 UCF classes). Caffe/Chainer pooling rounds
the output size up (7 -> 4 at ``pool5``), which is ``ceil_mode=True`` here.

Input convention (TGAN2's preprocessing, done by :class:`.feature_networks.C3DClassifier`): BGR
channel order, pixel values in 0..255 minus ``pixel_mean`` (a buffer in the state dict, so a file
can carry its own mean). The default mean is the Sports-1M per-channel mean in BGR order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["C3D", "SPORTS1M_BGR_MEAN"]

SPORTS1M_BGR_MEAN = (90.25164795, 97.65701294, 101.4083252)
"""Per-channel (B, G, R) mean of the Caffe C3D's Sports-1M mean volume, in 0..255 units."""


class C3D(nn.Module):
    """C3D classifier: ``(B, 3, 16, 112, 112)`` mean-subtracted BGR -> ``(B, num_classes)`` logits.

    ``widths`` are the channels of the five conv stages (reference: 64, 128, 256, 512, 512) and
    ``fc_dim`` the hidden fully connected width (4096); ``pool5_size`` is the spatial size after
    ``pool5`` (4 for 112x112 input). Smaller values build a fast stand-in for tests.
    """

    def __init__(self, *, num_classes: int = 101, widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512),
                 fc_dim: int = 4096, pool5_size: int = 4, pool5_frames: int = 1):
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        conv = dict(kernel_size=3, padding=1)
        self.conv1a = nn.Conv3d(3, w1, **conv)
        self.conv2a = nn.Conv3d(w1, w2, **conv)
        self.conv3a = nn.Conv3d(w2, w3, **conv)
        self.conv3b = nn.Conv3d(w3, w3, **conv)
        self.conv4a = nn.Conv3d(w3, w4, **conv)
        self.conv4b = nn.Conv3d(w4, w4, **conv)
        self.conv5a = nn.Conv3d(w4, w5, **conv)
        self.conv5b = nn.Conv3d(w5, w5, **conv)
        self.fc6 = nn.Linear(w5 * pool5_frames * pool5_size * pool5_size, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc8 = nn.Linear(fc_dim, num_classes)
        self.register_buffer("pixel_mean", torch.tensor(SPORTS1M_BGR_MEAN).view(3, 1, 1, 1))

    @staticmethod
    def _pool(x: Tensor, spatial_only: bool = False) -> Tensor:
        kernel = (1, 2, 2) if spatial_only else (2, 2, 2)
        return F.max_pool3d(x, kernel, kernel, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: BGR in 0..255 minus ``pixel_mean`` (see module doc) -> logits (softmax gives IS probabilities)."""
        x = self._pool(F.relu(self.conv1a(x)), spatial_only=True)        # (B, 64, 16, 56, 56)
        x = self._pool(F.relu(self.conv2a(x)))                           # (B, 128, 8, 28, 28)
        x = self._pool(F.relu(self.conv3b(F.relu(self.conv3a(x)))))      # (B, 256, 4, 14, 14)
        x = self._pool(F.relu(self.conv4b(F.relu(self.conv4a(x)))))      # (B, 512, 2, 7, 7)
        x = self._pool(F.relu(self.conv5b(F.relu(self.conv5a(x)))))      # (B, 512, 1, 4, 4)
        x = F.relu(self.fc6(x.flatten(1)))
        x = F.relu(self.fc7(x))
        return self.fc8(x)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A file may carry a full mean volume (3, T, H, W) instead of per-channel means: adopt its shape.
        key = prefix + "pixel_mean"
        if key in state_dict and state_dict[key].shape != self.pixel_mean.shape:
            self.pixel_mean = torch.empty_like(state_dict[key], device=self.pixel_mean.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

"""Inception-v1 I3D (Carreira & Zisserman 2017), laid out so the community's state dicts load.

The FVD weights the field uses in PyTorch (VideoGPT/TATS's ``i3d_pretrained_400.pt``) are the
TF-Hub ``i3d-kinetics-400`` network converted into the module tree of piergiaj's ``pytorch-i3d``
``InceptionI3d``. This file rebuilds that tree with the same attribute names, so the file's keys
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...)
load with ``strict=True``:

- stem ``Conv3d_1a_7x7``, ``MaxPool3d_2a_3x3``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``MaxPool3d_3a_3x3``;
- Inception blocks ``Mixed_3b`` ... ``Mixed_5c`` with branches ``b0``, ``b1a``/``b1b``, ``b2a``/``b2b``,
  ``b3a`` (max pool)/``b3b``; each conv unit has ``conv3d`` (no bias) and ``bn``;
- head ``logits`` (1x1x1 conv with bias, 400 outputs).

Convolutions and pools pad TensorFlow-"SAME" style (asymmetric, computed from the input size).
``forward`` returns the 400 logits averaged over the remaining time positions: the feature vector
TATS and VideoGPT feed to FVD/KVD. The final average pool is ``2x7x7`` as in the reference; for
inputs smaller than 224x224x16 its window is clamped to the feature map (the reference would fail),
which changes nothing at the reference size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InceptionI3d"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(front, back)`` of one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Pad ``(B, C, T, H, W)`` with zeros for a SAME conv/pool of ``kernel``/``stride``."""
    t, h, w = x.shape[2:]
    pt, ph, pw = (same_padding(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """SAME-padded 3D conv, optional batch norm, optional ReLU (``conv3d``/``bn`` as in pytorch-i3d)."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True, bias: bool = False,
                 relu: bool = True, bn_eps: float = 1e-5):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.01) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TensorFlow SAME padding (zeros, as the reference pads before pooling)."""

    def __init__(self, *, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1.

    ``widths = (b0, b1a, b1b, b2a, b2b, b3b)`` output channels, as in the I3D paper's table.
    """

    def __init__(self, *, in_channels: int, widths: tuple[int, int, int, int, int, int], bn_eps: float):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        unit = dict(bn_eps=bn_eps)
        self.b0 = Unit3D(in_channels=in_channels, out_channels=w0, **unit)
        self.b1a = Unit3D(in_channels=in_channels, out_channels=w1a, **unit)
        self.b1b = Unit3D(in_channels=w1a, out_channels=w1b, kernel=(3, 3, 3), **unit)
        self.b2a = Unit3D(in_channels=in_channels, out_channels=w2a, **unit)
        self.b2b = Unit3D(in_channels=w2a, out_channels=w2b, kernel=(3, 3, 3), **unit)
        self.b3a = MaxPool3dSame(kernel=(3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels=in_channels, out_channels=w3b, **unit)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
                         dim=1)


# (name, input channels, branch widths) of the Inception blocks, in order.
_BLOCKS: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """RGB I3D: ``(B, 3, T, H, W)`` in [-1, 1] (224x224 in the FVD protocol) -> ``(B, num_classes)`` logits.

    ``bn_eps``: VideoGPT/TATS build the converted network with ``1e-5`` (the default here);
    piergiaj's original uses ``1e-3`` (TensorFlow's value). The choice moves FVD slightly.
    """

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, bn_eps: float = 1e-5):
        super().__init__()
        unit = dict(bn_eps=bn_eps)
        self.Conv3d_1a_7x7 = Unit3D(in_channels=in_channels, out_channels=64, kernel=(7, 7, 7),
                                    stride=(2, 2, 2), **unit)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame(kernel=(1, 3, 3), stride=(1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(in_channels=64, out_channels=64, **unit)
        self.Conv3d_2c_3x3 = Unit3D(in_channels=64, out_channels=192, kernel=(3, 3, 3), **unit)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame(kernel=(1, 3, 3), stride=(1, 2, 2))
        self.Mixed_3b = InceptionBlock(in_channels=192, widths=_BLOCKS["Mixed_3b"][1], **unit)
        self.Mixed_3c = InceptionBlock(in_channels=256, widths=_BLOCKS["Mixed_3c"][1], **unit)
        self.MaxPool3d_4a_3x3 = MaxPool3dSame(kernel=(3, 3, 3), stride=(2, 2, 2))
        self.Mixed_4b = InceptionBlock(in_channels=480, widths=_BLOCKS["Mixed_4b"][1], **unit)
        self.Mixed_4c = InceptionBlock(in_channels=512, widths=_BLOCKS["Mixed_4c"][1], **unit)
        self.Mixed_4d = InceptionBlock(in_channels=512, widths=_BLOCKS["Mixed_4d"][1], **unit)
        self.Mixed_4e = InceptionBlock(in_channels=512, widths=_BLOCKS["Mixed_4e"][1], **unit)
        self.Mixed_4f = InceptionBlock(in_channels=528, widths=_BLOCKS["Mixed_4f"][1], **unit)
        self.MaxPool3d_5a_2x2 = MaxPool3dSame(kernel=(2, 2, 2), stride=(2, 2, 2))
        self.Mixed_5b = InceptionBlock(in_channels=832, widths=_BLOCKS["Mixed_5b"][1], **unit)
        self.Mixed_5c = InceptionBlock(in_channels=832, widths=_BLOCKS["Mixed_5c"][1], **unit)
        self.logits = Unit3D(in_channels=self.Mixed_5c.out_channels, out_channels=num_classes,
                             batch_norm=False, bias=True, relu=False)
        self.trunk = [
            self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
            self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3, self.Mixed_4b,
            self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f, self.MaxPool3d_5a_2x2,
            self.Mixed_5b, self.Mixed_5c,
        ]

    def features(self, x: Tensor) -> Tensor:
        """Mixed_5c output ``(B, 1024, t, h, w)`` (``t = T/8``, ``h = H/32``)."""
        for layer in self.trunk:
            x = layer(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Logits averaged over time positions: ``(B, 3, T, H, W)`` -> ``(B, num_classes)``."""
        x = self.features(x)
        t, h, w = x.shape[2:]
        # Reference: AvgPool3d((2, 7, 7), stride 1); clamped so small inputs still work.
        x = F.avg_pool3d(x, kernel_size=(min(2, t), min(7, h), min(7, w)), stride=1)
        x = self.logits(x)  # (B, classes, t', h', w'); dropout of the reference is off in eval
        return x.mean(dim=(3, 4)).mean(dim=2)

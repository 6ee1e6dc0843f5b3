"""The LPIPS perceptual loss of Eq. 1, built offline from a local VGG16 file.

The paper says "Perceptual Loss [28] using VGG19"; the ``lpips`` package (the reference
implementation of [28]) is VGG16-based and its calibrated linear layers exist only for VGG16, so we
use VGG16 as every public VQGAN (taming, TATS, LDM) does.

``lpips`` ships only its small linear layers. The VGG16 backbone is torchvision's ImageNet file
``vgg16-397923af.pth`` in torch hub's cache (``torch.hub.get_dir()/checkpoints``). We load it
ourselves with ``weights_only=True`` (no unpickling of code, no download attempt); when it is
missing, :func:`build_lpips` raises :class:`MissingFileError` saying where to put it.
``pretrained=False`` builds a randomly initialised backbone (tests, CPU demos) and warns that the
loss is then not perceptual.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from vqvdm_core.errors import MissingFileError
from vqvdm_core.runtime import distributed as dist

__all__ = ["VGG16_FILENAME", "VGG16_URL", "PerceptualLoss", "build_lpips", "vgg16_weights_path"]


VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILENAME}"


def vgg16_weights_path() -> Path:
    """Where torchvision (and we) look for the ImageNet VGG16 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def _load_vgg16_features(lpips_model: nn.Module, path: Path) -> None:
    """Copy the ``features`` convolutions of torchvision's VGG16 file into lpips's backbone slices."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise MissingFileError(f"{path} is not torchvision's VGG16 state dict (no 'features.*' "
                               f"weights). Replace it with {VGG16_URL}")
    backbone = lpips_model.net  # lpips.pretrained_networks.vgg16: slice1..slice5 named by VGG index
    loaded = 0
    for slice_ in (backbone.slice1, backbone.slice2, backbone.slice3, backbone.slice4, backbone.slice5):
        for index, layer in slice_.named_children():
            if isinstance(layer, nn.Conv2d):
                layer.weight.data.copy_(features[f"{index}.weight"])
                layer.bias.data.copy_(features[f"{index}.bias"])
                loaded += 1
    if loaded != 13:
        raise MissingFileError(f"{path}: expected VGG16's 13 convolutions, loaded {loaded}")


def require_vgg16() -> Path:
    """The VGG16 weight file LPIPS needs, or a :class:`MissingFileError` saying where it goes."""
    path = vgg16_weights_path()
    if not path.is_file():
        raise MissingFileError(
            f"LPIPS needs torchvision's ImageNet VGG16 weights '{VGG16_FILENAME}' at {path} "
            f"(torch hub cache; set TORCH_HOME to move it). Download {VGG16_URL} to that path, "
            f"or set the tokenizer's 'perceptual_pretrained: false' (random backbone, only for "
            f"tests and demos) or 'perceptual_weight: 0' (no perceptual loss)."
        )
    return path


def build_lpips(*, pretrained: bool = True) -> nn.Module:
    """A frozen ``lpips.LPIPS(net="vgg")`` in eval mode.

    ``pretrained=True`` needs :func:`vgg16_weights_path` and raises :class:`MissingFileError`
    without it; ``pretrained=False`` uses a random backbone (:class:`PerceptualLoss` warns).
    """
    import lpips

    if pretrained:
        require_vgg16()
    with warnings.catch_warnings():
        # lpips calls torchvision's deprecated `pretrained=` argument; we always pass False and load
        # the backbone ourselves, so no network access is attempted.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    if pretrained:
        _load_vgg16_features(model, vgg16_weights_path())
    model.eval().requires_grad_(False)
    return model


class PerceptualLoss(nn.Module):
    """LPIPS between two videos, averaged over all frames or over ``frames`` random frames per clip.

    ``(B, 3, T, H, W)`` pair in [-1, 1] -> scalar. Sampling a few frames (TATS uses one) trades the
    estimate's noise for speed: LPIPS's VGG is the most expensive part of a small VQGAN's step.
    """

    def __init__(self, *, pretrained: bool = True, frames: int | None = None):
        super().__init__()
        self.frames = frames
        self.pretrained = pretrained
        # A missing VGG16 file is reported by VQGAN3D.missing_files before a run starts (and by
        # build_lpips at the first training step otherwise): encoding and sampling never need it.
        if not pretrained:
            message = ("LPIPS perceptual loss with a RANDOM VGG16 backbone (perceptual_pretrained: "
                       "false): it is not a perceptual loss; use it only for tests and CPU demos.")
            warnings.warn(message, stacklevel=3)
        # Built on first use: encoding, decoding and sampling never pay for the VGG.
        self.lpips: nn.Module | None = None

    def network(self, device: torch.device) -> nn.Module:
        """The LPIPS network on ``device``, built the first time it is needed."""
        if self.lpips is None:
            self.lpips = build_lpips(pretrained=self.pretrained)
        return self.lpips.to(device)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """Always stays in eval mode (its dropout is for training the linear layers, which we never do)."""
        return super().train(False)

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        b, _, t, _, _ = real.shape
        if self.frames is not None and self.frames < t:
            # The same random frames of each clip in real and fake: (B, k) indices per clip.
            # (drawn for the global batch when several processes share it: see vqvdm_core.runtime.distributed)
            scores = dist.draw_for_global_batch(lambda n: torch.rand(n, t, device=real.device), b)
            idx = scores.argsort(dim=1)[:, : self.frames]
            rows = torch.arange(b, device=real.device)[:, None]
            real = rearrange(real, "b c t h w -> b t c h w")[rows, idx]  # (B, k, C, H, W)
            fake = rearrange(fake, "b c t h w -> b t c h w")[rows, idx]
            real, fake = (rearrange(v, "b k c h w -> (b k) c h w") for v in (real, fake))
        else:
            real, fake = (rearrange(v, "b c t h w -> (b t) c h w") for v in (real, fake))
        return self.network(real.device)(fake, real.detach()).mean()

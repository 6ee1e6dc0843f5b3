"""Reconstruction quality of a tokenizer: PSNR, SSIM and LPIPS between clips and their reconstructions.

All three are computed per frame and averaged over frames and clips (a video is a stack of images
here; the 3D nature is in the tokenizer, not in these scores). Both inputs are clamped to [-1, 1]
(what a saved video can hold) and mapped to [0, 1]:

- PSNR: ``10 log10(1 / MSE)`` per frame over channels and pixels; identical frames give ``inf``.
- SSIM (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, data range
  1, per channel on the valid region (no padding), averaged over the map and channels; frames must be
  at least 11 pixels high and wide.
- LPIPS (Zhang et al. 2018, ``lpips`` package, VGG or AlexNet trunk) on [-1, 1] frames. The trunk is
  torchvision's ImageNet file (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``), found in
  torch hub's ``checkpoints`` folder or by :func:`vqvdm_core.io.weights.find_weights`; it is never
  downloaded. ``lpips_pretrained: false`` uses a random trunk (seeded): the value is then NOT
  comparable to anything and the result and protocol say so (``lpips_random_trunk``).
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import MissingFileError, missing_file_messages
from vqvdm_core.interfaces import Metric
from vqvdm_core.interfaces.configurable import ComponentConfig, FilePurpose
from vqvdm_core.io.weights import find_weights

__all__ = ["ReconstructionMetrics", "psnr_per_frame", "ssim_per_frame", "gaussian_window", "build_lpips"]

SSIM_K1, SSIM_K2 = 0.01, 0.03

LPIPS_TRUNKS = {
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth", 13),
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", 5),
}
"""trunk -> (torchvision file name, its download address, number of convolutions)."""


def _unit(video: Tensor) -> Tensor:
    """[-1, 1] (clamped) -> [0, 1], float64 for exact-enough error sums."""
    return (video.detach().to(torch.float64).clamp(-1, 1) + 1) / 2


def psnr_per_frame(real: Tensor, fake: Tensor) -> Tensor:
    """PSNR in dB of each frame, ``(B, 3, T, H, W)`` pairs in [-1, 1] -> ``(B, T)`` (``inf`` if equal)."""
    mse = (_unit(real) - _unit(fake)).pow(2).mean(dim=(1, 3, 4))
    return 10.0 * torch.log10(1.0 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(images: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter of ``(N, C, H, W)``, each channel on its own."""
    c = images.shape[1]
    k = window.numel()
    images = F.conv2d(images, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(images, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_per_frame(real: Tensor, fake: Tensor, *, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM of each frame, ``(B, 3, T, H, W)`` pairs in [-1, 1] -> ``(B, T)`` (1 when identical)."""
    b, _, t, h, w = real.shape
    if h < window_size or w < window_size:
        raise ValueError(f"SSIM needs frames of at least {window_size}x{window_size} pixels, got {h}x{w}")
    x = rearrange(_unit(real), "b c t h w -> (b t) c h w")
    y = rearrange(_unit(fake), "b c t h w -> (b t) c h w")
    window = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # data range 1
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x ** 2
    var_y = _blur(y * y, window) - mu_y ** 2
    cov = _blur(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return rearrange(ssim_map.mean(dim=(1, 2, 3)), "(b t) -> b t", b=b, t=t)


def _load_trunk(model: nn.Module, path, *, trunk: str) -> None:
    """Copy torchvision's ``features.*`` convolutions into lpips's trunk slices (named by index)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    expected = LPIPS_TRUNKS[trunk][2]
    loaded = 0
    for slice_ in model.net.children():
        for index, layer in slice_.named_children():
            if isinstance(layer, nn.Conv2d):
                if f"{index}.weight" not in features:
                    break
                layer.weight.data.copy_(features[f"{index}.weight"])
                layer.bias.data.copy_(features[f"{index}.bias"])
                loaded += 1
    if loaded != expected:
        raise MissingFileError(f"{path} is not torchvision's {trunk} state dict: loaded {loaded} of its "
                               f"{expected} convolutions. Replace it with {LPIPS_TRUNKS[trunk][1]}")


def _random_trunk(model: nn.Module, *, seed: int) -> None:
    """torchvision's VGG/AlexNet initialisation of the trunk convolutions, from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    for layer in model.net.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            nn.init.zeros_(layer.bias)


def lpips_trunk_path(net: str, weights: str | None) -> Path:
    """The ImageNet trunk file of LPIPS (``weights``, or searched), or a :class:`MissingFileError`."""
    filename, url, _ = LPIPS_TRUNKS[net]
    return find_weights(
        filename, explicit=weights, env_var="VQVDM_LPIPS_TRUNK",
        description=f"torchvision's ImageNet {'VGG16' if net == 'vgg' else 'AlexNet'} weights, the trunk "
                    "of the LPIPS metric (lpips ships only its linear layers)",
        source_url=f"{url} (torchvision's download; torch hub keeps it in torch.hub.get_dir()/checkpoints)",
        extra_dirs=[Path(torch.hub.get_dir()) / "checkpoints"],
    )


def build_lpips(*, net: str = "vgg", pretrained: bool = True, weights: str | None = None) -> nn.Module:
    """A frozen ``lpips.LPIPS`` in eval mode, built offline.

    ``pretrained``: the ImageNet trunk from a local file (missing -> :class:`MissingFileError`);
    else a random trunk drawn from a fixed seed (deterministic, not perceptual). The module tree is
    built on the meta device (instant: torchvision would otherwise initialise a whole classifier
    we never use), then every tensor is filled from files or the seeded initialisation.
    """
    import lpips

    path = lpips_trunk_path(net, weights) if pretrained else None
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecated `pretrained=`; meta no-op loads
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    model = model.to_empty(device="cpu")
    model.scaling_layer = sys.modules["lpips.lpips"].ScalingLayer()  # its constant shift/scale buffers
    lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"  # shipped with lpips
    lin_state = torch.load(lin_file, map_location="cpu", weights_only=True)
    wanted = {key for key in model.state_dict() if re.match(r"lin\d+\.", key)}  # lin0..linN (lins aliases them)
    if not wanted <= set(lin_state):
        raise MissingFileError(f"{lin_file} (lpips's calibrated linear layers) lacks "
                               f"{sorted(wanted - set(lin_state))}; reinstall lpips")
    model.load_state_dict(lin_state, strict=False)
    if path is not None:
        _load_trunk(model, path, trunk=net)
    else:
        _random_trunk(model, seed=0)
    return model.eval().requires_grad_(False)


class ReconstructionMetrics(Metric):
    """PSNR, SSIM and LPIPS of reconstructions (``fake``) against their clips (``real``), per frame."""

    requires_real: ClassVar[bool] = True

    class Config(ComponentConfig):
        lpips: bool = Field(True, description="compute LPIPS (false skips it and its trunk weights)")
        lpips_pretrained: bool = Field(True, description="ImageNet trunk from a local file; false: random "
                                       "trunk, value not comparable (tests, offline demos)")
        lpips_net: Literal["vgg", "alex"] = Field("vgg", description="LPIPS trunk")
        lpips_weights: str | None = Field(None, description="path of the trunk file; null: search "
                                          "torch hub's checkpoints, $VQVDM_WEIGHTS_DIR, ~/.cache/vqvdm/weights")
        lpips_batch: int = Field(32, ge=1, description="frames per LPIPS forward (memory only)")
        ssim_window: int = Field(11, ge=3, description="SSIM Gaussian window (standard: 11)")
        ssim_sigma: float = Field(1.5, gt=0, description="SSIM Gaussian sigma (standard: 1.5)")

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The LPIPS trunk file, if LPIPS is on with the ImageNet trunk and it cannot be found."""
        if not (config.lpips and config.lpips_pretrained):
            return []
        return missing_file_messages(lambda: lpips_trunk_path(config.lpips_net, config.lpips_weights))

    def __init__(self, config: "ReconstructionMetrics.Config | None" = None, **overrides: Any):
        self.config = cfg = self.resolve_config(config, overrides)
        self.lpips_model = (build_lpips(net=cfg.lpips_net, pretrained=cfg.lpips_pretrained,
                                        weights=cfg.lpips_weights) if cfg.lpips else None)
        self.reset()

    def reset(self) -> None:
        self._psnr: list[Tensor] = []
        self._ssim: list[Tensor] = []
        self._lpips: list[Tensor] = []

    def to(self, device: torch.device | str) -> "ReconstructionMetrics":
        if self.lpips_model is not None:
            self.lpips_model.to(device)
        return self

    @torch.no_grad()
    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if real is None or fake is None:
            raise ValueError("reconstruction metrics need both real clips and their reconstructions (fake)")
        if real.shape != fake.shape:
            raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
        c = self.config
        self._psnr.append(psnr_per_frame(real, fake).flatten().cpu())
        self._ssim.append(ssim_per_frame(real, fake, window_size=c.ssim_window, sigma=c.ssim_sigma).flatten().cpu())
        if self.lpips_model is not None:
            device = next(self.lpips_model.parameters()).device
            x = rearrange(real.clamp(-1, 1), "b c t h w -> (b t) c h w")
            y = rearrange(fake.clamp(-1, 1), "b c t h w -> (b t) c h w")
            for xs, ys in zip(x.split(c.lpips_batch), y.split(c.lpips_batch)):
                d = self.lpips_model(xs.to(device).float(), ys.to(device).float())
                self._lpips.append(d.flatten().double().cpu())

    def compute(self) -> dict[str, float]:
        if not self._psnr:
            raise ValueError("reconstruction metrics: nothing accumulated (call update(real=..., fake=...))")
        out = {
            "psnr": float(torch.cat(self._psnr).mean()),
            "ssim": float(torch.cat(self._ssim).mean()),
        }
        if self.lpips_model is not None:
            out["lpips"] = float(torch.cat(self._lpips).mean())
            if not self.config.lpips_pretrained:
                out["lpips_random_trunk"] = 1.0  # flag: lpips above is NOT comparable
        return out

    def protocol(self) -> dict[str, Any]:
        c = self.config
        fields = c.model_dump(exclude={"lpips_batch", "lpips_weights"})
        fields.update(
            averaging="per frame, then mean over frames and clips; inputs clamped to [-1, 1] -> [0, 1]",
            ssim_constants={"K1": SSIM_K1, "K2": SSIM_K2, "data_range": 1.0, "padding": "valid"},
        )
        if c.lpips and not c.lpips_pretrained:
            fields["lpips_note"] = "random trunk (lpips_pretrained: false): LPIPS NOT comparable"
        return fields


"""An analytic probe of generated motion for the built-in ``synthetic_motion`` data (no learned network).

In ``synthetic_motion`` every clip is a uniform background with a few shapes translating rigidly,
with wrap-around, by ``d = speed * size / fps`` pixels per frame in the direction
``theta_c = 2 pi c / num_classes`` of its class ``c`` (x right, y DOWN, so class 1 of 4 moves up).
A generator that learned the data must reproduce that: the right direction for the requested class,
a step that grows as the requested FPS shrinks, and objects that stay themselves.

Per clip, the probe estimates the displacement between consecutive frames by phase correlation
(normalised cross-power spectrum summed over the colour channels; with wrap-around motion a
translation is exactly a phase ramp), refined to sub-pixel precision by a weighted least-squares fit
of the residual phase ramp at low frequencies. From those ``T-1`` displacements:

- ``class_accuracy``: the mean displacement's angle, snapped to the nearest of the ``num_classes``
  directions, equals the requested class (clips with label -1 are left out);
- ``fps_speed_spearman``: Spearman rank correlation between requested FPS and measured speed over
  all clips; the data has speed ~ 1/fps, so a good model gives a value near -1 (signed, reported
  as is; NaN when all clips share one FPS);
- ``speed_rel_error``: mean of ``|measured - expected| / expected`` with expected ``speed*size/fps``;
- ``motion_consistency``: fraction of frame pairs whose displacement lies within ``shift_tolerance``
  pixels of the clip's mean displacement (constant velocity; frames in a scrambled order score low);
- ``persistence``: fraction of frames ``t >= 1`` that match the first frame translated onto them
  (registered by phase correlation, shifted sub-pixel in the Fourier domain) with a residual below
  ``persistence_tolerance`` of the first frame's contrast (``||f_t - S f_0|| / ||f_0 - mean f_0||``).
  Objects that appear, vanish, morph or change colour score low; so do frames of unrelated content.

The values are computed per clip, then averaged over clips. ``requires_real`` is False.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from vqvdm_core.interfaces import NO_LABEL, Metric
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["MotionProbe", "estimate_shift", "shift_from_cross_power", "fourier_shift", "shift_ramp"]


def _frequencies(h: int, w: int, *, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(ky, kx, multiplicity)`` of an ``rfft2`` spectrum ``(H, W//2+1)``: signed integer frequencies,
    and how many bins of the full spectrum each half-spectrum bin stands for (1 or 2)."""
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=device, dtype=torch.float64).view(h, 1).expand(h, w // 2 + 1)
    kx = torch.fft.rfftfreq(w, d=1.0 / w, device=device, dtype=torch.float64).view(1, -1).expand(h, w // 2 + 1)
    twice = (kx > 0) & ~((w % 2 == 0) & (kx == w // 2))
    return ky, kx, 1.0 + twice.to(torch.float64)


def shift_from_cross_power(cross: Tensor, h: int, w: int, *, band: float = 0.25, iterations: int = 2) -> Tensor:
    """Displacement ``(N, 2)`` = ``(dx, dy)`` encoded in cross-power spectra ``(N, H, W//2+1)``.

    ``cross = rfft2(b) * conj(rfft2(a))`` (summed over channels) for ``b(x, y) ~ a(x - dx, y - dy)``.
    The integer peak of the phase correlation is refined by a weighted least-squares fit of the residual
    phase ramp over frequencies ``|k| <= band * size`` (weights: cross power).
    """
    n = cross.shape[0]
    power = cross.abs()
    corr = torch.fft.irfft2(cross / (power + 1e-12), s=(h, w))  # peaks at (dy, dx) mod (H, W)
    peak = corr.flatten(1).argmax(dim=1)
    py, px = (peak // w).to(torch.float64), (peak % w).to(torch.float64)
    py = torch.where(py > h // 2, py - h, py)
    px = torch.where(px > w // 2, px - w, px)
    shift = torch.stack([px, py], dim=1)  # (N, 2)

    ky, kx, _ = _frequencies(h, w, device=cross.device)
    in_band = (kx.abs() <= band * w) & (ky.abs() <= band * h) & ((kx != 0) | (ky != 0))
    ax, ay = 2 * math.pi * kx[in_band] / w, 2 * math.pi * ky[in_band] / h  # phase slope per pixel of shift
    cross_band = cross[:, in_band].to(torch.complex128)  # (N, F)
    weight = cross_band.abs()
    normal = torch.stack([
        torch.stack([(weight * ax * ax).sum(1), (weight * ax * ay).sum(1)], dim=-1),
        torch.stack([(weight * ax * ay).sum(1), (weight * ay * ay).sum(1)], dim=-1),
    ], dim=-2)  # (N, 2, 2)
    scale = normal.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-12)
    normal = normal + (1e-9 * scale)[:, None, None] * torch.eye(2, dtype=torch.float64, device=cross.device)
    for _ in range(iterations):
        # Remove the current estimate; what is left is e^{-i (ax ddx + ay ddy)} for a small residual.
        phase = torch.angle(cross_band * torch.exp(1j * (ax * shift[:, :1] + ay * shift[:, 1:])))
        rhs = -torch.stack([(weight * ax * phase).sum(1), (weight * ay * phase).sum(1)], dim=-1)
        shift = shift + torch.linalg.solve(normal, rhs)
    return shift


def _spectrum(frames: Tensor) -> Tensor:
    """``rfft2`` of ``(..., H, W)`` frames with each frame's mean removed (float32 transform)."""
    x = frames.detach().float()
    return torch.fft.rfft2(x - x.mean(dim=(-2, -1), keepdim=True))


def estimate_shift(a: Tensor, b: Tensor, *, band: float = 0.25) -> Tensor:
    """Displacement ``(dx, dy)`` in pixels that carries frames ``a`` onto frames ``b`` on the torus.

    ``a``, ``b``: ``(N, C, H, W)`` -> ``(N, 2)`` float64 with ``b(x, y) ~ a(x - dx, y - dy)``; components
    lie in ``(-W/2, W/2]`` and ``(-H/2, H/2]`` (sub-pixel, see :func:`shift_from_cross_power`).
    """
    h, w = a.shape[-2:]
    cross = (_spectrum(b) * _spectrum(a).conj()).sum(dim=1)
    return shift_from_cross_power(cross, h, w, band=band)


def shift_ramp(shift: Tensor, h: int, w: int) -> Tensor:
    """Half-spectrum ``(N, H, W//2+1)`` factors that translate frames by ``(N, 2)`` shifts ``(dx, dy)``."""
    ky, kx, _ = _frequencies(h, w, device=shift.device)
    dx, dy = shift[:, 0].view(-1, 1, 1), shift[:, 1].view(-1, 1, 1)
    return torch.exp(-2j * math.pi * (kx * dx / w + ky * dy / h))


def fourier_shift(frames: Tensor, shift: Tensor) -> Tensor:
    """Translate ``(N, C, H, W)`` frames by ``(N, 2)`` pixel shifts ``(dx, dy)`` with wrap-around (sub-pixel)."""
    h, w = frames.shape[-2:]
    spectrum = torch.fft.rfft2(frames.to(torch.float64))
    return torch.fft.irfft2(spectrum * shift_ramp(shift.to(frames.device), h, w)[:, None], s=(h, w))


def _spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rho with average ranks for ties (NaN if either side is constant)."""
    from scipy.stats import spearmanr

    if len(x) < 2 or bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x.numpy(), y.numpy()).statistic)


class MotionProbe(Metric):
    """Direction, FPS-speed and persistence probe of generated synthetic-motion clips (no network)."""

    requires_real: ClassVar[bool] = False

    class Config(ComponentConfig):
        num_classes: int = Field(4, ge=2, description="direction classes of the data (synthetic_motion: 4)")
        speed: float = Field(0.25, gt=0, description="displacement in frame sizes per second (synthetic_motion: 0.25)")
        shift_tolerance: float = Field(0.5, gt=0, description="pixels a frame pair's displacement may differ "
                                       "from the clip's mean and still count as consistent")
        persistence_tolerance: float = Field(0.3, gt=0, description="largest relative residual "
                                             "||f_t - S f_0|| / ||f_0 - mean f_0|| of a persistent frame")
        band: float = Field(0.25, gt=0, le=0.5, description="frequencies (fraction of size) used to refine shifts")

    def __init__(self, config: "MotionProbe.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.reset()

    def reset(self) -> None:
        self._velocity: list[Tensor] = []      # (B, 2) mean displacement px/frame
        self._consistency: list[Tensor] = []   # (B,)
        self._persistence: list[Tensor] = []   # (B,)
        self._labels: list[Tensor] = []        # (B,)
        self._fps: list[Tensor] = []           # (B,)
        self._sizes: list[tuple[int, int]] = []

    @torch.no_grad()
    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if fake is None:
            return
        if fake.ndim != 5 or fake.shape[2] < 2:
            raise ValueError(f"motion_probe needs clips (B, C, T>=2, H, W), got shape {tuple(fake.shape)}")
        c = self.config
        b, _, t, h, w = fake.shape
        spectra = _spectrum(fake.clamp(-1, 1))  # (B, C, T, H, W//2+1), computed once for every frame
        # Consecutive pairs: B*(T-1) displacements.
        cross = (spectra[:, :, 1:] * spectra[:, :, :-1].conj()).sum(dim=1)            # (B, T-1, H, W')
        steps = shift_from_cross_power(cross.flatten(0, 1), h, w, band=c.band).view(b, t - 1, 2)
        velocity = steps.mean(dim=1)                                                  # (B, 2)
        consistent = ((steps - velocity[:, None]).norm(dim=-1) <= c.shift_tolerance).double().mean(1)

        # Persistence: register every frame t >= 1 to the first frame, measure what is left (Parseval,
        # on the mean-free spectra: ||f_t - S f_0||^2 and ||f_0 - mean f_0||^2 up to the same factor).
        first, later = spectra[:, :, :1], spectra[:, :, 1:]
        cross0 = (later * first.conj()).sum(dim=1)                                      # (B, T-1, H, W')
        to_first = shift_from_cross_power(cross0.flatten(0, 1), h, w, band=c.band)      # (B*(T-1), 2)
        ramp = shift_ramp(to_first, h, w).view(b, 1, t - 1, h, -1)
        _, _, multiplicity = _frequencies(h, w, device=fake.device)
        residual = ((later - first * ramp).abs() ** 2 * multiplicity).sum(dim=(1, 3, 4))   # (B, T-1)
        contrast = ((first.abs() ** 2) * multiplicity).sum(dim=(1, 3, 4)).clamp_min(1e-12)  # (B, 1)
        relative = (residual / contrast).sqrt()
        persistent = relative <= c.persistence_tolerance

        self._velocity.append(velocity.cpu())
        self._consistency.append(consistent.cpu())
        self._persistence.append(persistent.double().mean(1).cpu())
        self._labels.append(torch.full((b,), NO_LABEL, dtype=torch.long) if labels is None
                            else torch.as_tensor(labels).long().flatten().cpu())
        self._fps.append(torch.full((b,), math.nan, dtype=torch.float64) if fps is None
                         else torch.as_tensor(fps, dtype=torch.float64).flatten().cpu())
        self._sizes.extend([(h, w)] * b)

    def compute(self) -> dict[str, float]:
        if not self._velocity:
            raise ValueError("motion_probe: no clips accumulated (call update(fake=..., labels=..., fps=...))")
        c = self.config
        velocity = torch.cat(self._velocity)
        labels, fps = torch.cat(self._labels), torch.cat(self._fps)
        sizes = torch.tensor(self._sizes, dtype=torch.float64)  # (N, 2) = (H, W)
        measured = velocity.norm(dim=1)
        # Angle in image coordinates with y down: up is +90 degrees.
        angle = torch.atan2(-velocity[:, 1], velocity[:, 0])
        predicted = torch.round(angle / (2 * math.pi / c.num_classes)).long() % c.num_classes
        labelled = (labels >= 0) & (labels < c.num_classes)
        accuracy = float((predicted[labelled] == labels[labelled]).double().mean()) if labelled.any() else math.nan

        theta = 2 * math.pi * labels.clamp_min(0).double() / c.num_classes
        h, w = sizes[:, 0], sizes[:, 1]
        expected = torch.where(labelled,
                               torch.hypot(c.speed * w / fps * torch.cos(theta), c.speed * h / fps * torch.sin(theta)),
                               c.speed * torch.sqrt(h * w) / fps)
        known = ~torch.isnan(fps)
        rel_error = float(((measured - expected).abs() / expected)[known].mean()) if known.any() else math.nan
        spearman = _spearman(fps[known], measured[known]) if known.any() else math.nan
        return {
            "class_accuracy": accuracy,
            "fps_speed_spearman": spearman,
            "speed_rel_error": rel_error,
            "motion_consistency": float(torch.cat(self._consistency).mean()),
            "persistence": float(torch.cat(self._persistence).mean()),
            "mean_speed_px": float(measured.mean()),
            "num_clips": float(len(measured)),
        }

    def protocol(self) -> dict[str, Any]:
        fields = self.config.model_dump()
        fields.update(
            method="phase correlation between consecutive frames (sub-pixel phase-ramp fit); persistence "
                   "by registering each frame to the first",
            expected_speed="speed * size / fps pixels per frame, direction 2*pi*label/num_classes (y down)",
        )
        return fields

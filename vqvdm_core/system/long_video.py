"""Past the trained clip length: long videos and continuations, one latent window at a time.

A denoiser is trained on latents of one length (``t`` latent frames, e.g. 4 for the paper's 16-frame
clips). To draw ``N`` frames, :func:`plan_windows` cuts the long latent into windows of ``t`` frames
that overlap: each window after the first starts with ``overlap`` latent frames that are already
known (the end of the previous window, or the encoded frames of a given clip) and generates the
rest. The known frames reach a window in up to two ways.

Inside the sampler's ``denoise`` function (:func:`condition_on_known`), so that every sampler
plug-in works unchanged and any denoiser can be used (Ho et al. 2022, *Video Diffusion Models*,
Sec. 3.1):

* ``replacement``: before every denoiser call, the known frames of the state are replaced by a
  fresh draw of the forward process at that level, ``alpha_i z_known + sigma_i eps``; the model's
  x0 estimate of the known frames is replaced by ``z_known`` (so the known frames end exactly as
  given). The new frames see the known ones only through this noisy input.
* ``reconstruction`` (VDM's reconstruction guidance, on top of replacement): the x0 estimate of
  the new frames is moved along ``-(w_r alpha_i / 2) grad ||z_known - x0_known(z_i)||^2`` taken
  with respect to the new frames of the state, which pulls them towards a state from which the
  model would *reconstruct* the known frames. It needs one backward pass through the denoiser per
  call (about 3x the cost of a call).

And, for a denoiser trained with frame conditioning
(:attr:`~vqvdm_core.interfaces.Denoiser.known_frames_rate` > 0: a fraction of its training clips had
a clean known prefix as an extra input, as in FDM and MCVD), as that clean input; the system passes
it and can guide towards it (``known_guidance``, see
:meth:`~vqvdm_core.system.LatentVideoDiffusion.sample`).

What causality buys: the paper's U-Net attends only to earlier frames, so the new frames are
estimated from the known ones the way the model was trained to (a later frame always sees the
earlier ones), and rotary time positions are relative, so a window starting at latent frame 40 is
no different to the model from one starting at 0. The flip side: the known frames' estimate depends
on the new frames only through the temporal convolutions' one-frame look-ahead, so reconstruction
guidance, whose gradient travels that way, is weak on a causal model; a non-causal denoiser gives
it more to work with. On the quickstart model, replacement alone kept the context's direction in
about half the continuations and frame conditioning in about nine in ten (docs/results.md).

Class, FPS and guidance apply to every window. Memory is that of one window (the long latent
itself is small) plus the decode, which runs in temporal chunks when the tokenizer declares a
bounded reach (:attr:`~vqvdm_core.interfaces.VideoTokenizer.decode_context`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces.sampler import DenoiseFn, SamplingChain, gaussian_like

__all__ = [
    "KNOWN_FRAMES_METHODS",
    "KnownFramesMethod",
    "Window",
    "check_known_frames_settings",
    "condition_on_known",
    "decode_in_chunks",
    "plan_windows",
]

KnownFramesMethod = Literal["replacement", "reconstruction"]
KNOWN_FRAMES_METHODS: tuple[str, ...] = ("replacement", "reconstruction")


@dataclass(frozen=True)
class Window:
    """One window of a long latent: frames ``start .. end - 1``; the first ``known`` are given."""

    start: int
    known: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def first_new(self) -> int:
        """Index (in the long latent) of the window's first generated frame."""
        return self.start + self.known


def plan_windows(total: int, *, window: int, overlap: int, context: int = 0) -> list[Window]:
    """The windows that generate latent frames ``context .. total - 1`` of a ``total``-frame latent.

    Each window is ``window`` frames long (shorter only when ``total`` is). The first window after a
    given clip's ``context`` frames keeps as much of it as fits (``min(context, window - 1)`` known
    frames); every later one keeps the last ``overlap`` generated frames, and the last window slides
    back to stay full length (keeping more known frames) rather than run short.
    """
    if window < 1:
        raise UserError(f"a window needs at least one latent frame, got {window}")
    if total < 1 or not 0 <= context < total:
        raise UserError(f"need 0 <= context ({context}) < total ({total}) latent frames")
    if window > 1 and not 1 <= overlap < window:
        raise UserError(f"the overlap must be between 1 and {window - 1} latent frames (the window is "
                        f"{window}), got {overlap}")
    windows: list[Window] = []
    done = context
    while done < total:
        if done == 0:
            keep = 0
        elif done == context:
            keep = min(context, window - 1)
        else:
            keep = min(done, overlap)
        end = min(done - keep + window, total)
        start = max(0, end - window)
        windows.append(Window(start=start, known=done - start, end=end))
        done = end
    return windows


def check_known_frames_settings(method: str, weight: float, known_guidance: float = 1.0) -> None:
    """Refuse an unknown method, or a weight or guidance scale that is not a finite number >= 0."""
    if method not in KNOWN_FRAMES_METHODS:
        raise UserError(f"unknown known-frames method '{method}'; use one of: {', '.join(KNOWN_FRAMES_METHODS)}")
    for name, value in (("reconstruction guidance weight", weight), ("known-frame guidance scale", known_guidance)):
        if not math.isfinite(value) or value < 0:
            raise UserError(f"the {name} must be finite and >= 0, got {value}")


def condition_on_known(denoise: DenoiseFn, chain: SamplingChain, known: Tensor, *,
                       method: str = "replacement", weight: float = 2.0,
                       generator: torch.Generator | None = None) -> DenoiseFn:
    """Wrap ``denoise`` so that the first ``known.shape[2]`` frames of the state are ``known``.

    ``known``: the scaled clean latent of those frames ``(B, c, k, h, w)``. See the module text for
    the two methods; ``weight`` is reconstruction guidance's ``w_r``. Works with any sampler: the
    wrapped function still maps ``(x, i)`` to ``(x0, eps)``.
    """
    check_known_frames_settings(method, weight)
    k = known.shape[2]

    def replaced(x: Tensor, i: int) -> tuple[Tensor, Tensor]:
        alpha, sigma = chain.alpha(i), chain.sigma(i)
        noise = gaussian_like(known, generator)
        x = x.clone()
        x[:, :, :k] = alpha * known + sigma * noise  # a draw of q(z_i | z_known)
        return x, noise

    def by_replacement(x: Tensor, i: int) -> tuple[Tensor, Tensor]:
        x, noise = replaced(x, i)
        x0, eps = denoise(x, i)
        x0[:, :, :k], eps[:, :, :k] = known, noise
        return x0, eps

    def by_reconstruction(x: Tensor, i: int) -> tuple[Tensor, Tensor]:
        x, noise = replaced(x, i)
        alpha, sigma = chain.alpha(i), chain.sigma(i)
        with torch.enable_grad():
            state = x.detach().requires_grad_(True)
            x0, _ = denoise(state, i)
            error = (known - x0[:, :, :k].float()).pow(2).sum()
            (grad,) = torch.autograd.grad(error, state)
        x0 = x0.detach()
        x0[:, :, k:] -= (weight * alpha / 2.0) * grad[:, :, k:].to(x0.dtype)
        x0[:, :, :k] = known
        eps = (x - alpha * x0) / sigma  # consistent with the guided x0 (sigma > 0 on every level)
        eps[:, :, :k] = noise
        return x0, eps

    return by_replacement if method == "replacement" else by_reconstruction


def decode_in_chunks(decode: Callable[[Tensor], Tensor], z: Tensor, *, chunk: int, reach: int,
                     frames_per_latent: int) -> Tensor:
    """Decode a long latent ``(B, c, t, h, w)`` ``chunk`` latent frames at a time.

    Each chunk is widened by ``reach`` latent frames on both sides (what one decoded frame depends
    on) and its own frames are cropped from the result, so the video equals one whole decode while
    only one widened chunk's activations are alive. ``frames_per_latent``: video frames per latent
    frame (the tokenizer's temporal factor).
    """
    t = z.shape[2]
    if chunk < 1 or reach < 0:
        raise ValueError(f"decode_in_chunks needs chunk >= 1 and reach >= 0, got {chunk}, {reach}")
    out: Tensor | None = None
    for start in range(0, t, chunk):
        stop = min(start + chunk, t)
        lo, hi = max(0, start - reach), min(t, stop + reach)
        part = decode(z[:, :, lo:hi])  # (B, 3, (hi - lo) * f, H, W)
        part = part[:, :, (start - lo) * frames_per_latent:(stop - lo) * frames_per_latent]
        if out is None:
            out = part.new_empty((part.shape[0], part.shape[1], t * frames_per_latent, *part.shape[3:]))
        out[:, :, start * frames_per_latent:stop * frames_per_latent] = part
    assert out is not None
    return out

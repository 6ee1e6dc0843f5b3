"""Frame conditioning of a denoiser's input (as FDM and MCVD train it): the clean latent of the
given frames and their mask, concatenated to ``x_t`` along channels. Shared by ``unet3d`` and
``dit3d``; the contract is ``Denoiser``'s ``known`` argument (``vqvdm_core/interfaces/denoiser.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["with_known_frames"]


def with_known_frames(x_t: Tensor, known: Tensor | None, *, enabled: bool, name: str) -> Tensor:
    """``x_t`` ``(B, c, T, H, W)`` -> ``(B, 2c + 1, T, H, W)`` (``[x_t, known latent, mask]``) for a
    denoiser built with frame conditioning (``enabled``); ``known=None`` gives an all-zero latent and
    mask (nothing given). Without it ``x_t`` is returned as is and a ``known`` is refused."""
    if not enabled:
        if known is not None:
            raise ValueError(f"{name} was built without known_frames: it takes no known frames")
        return x_t
    want = (x_t.shape[0], x_t.shape[1] + 1, *x_t.shape[2:])
    if known is None:
        known = x_t.new_zeros(want)
    if tuple(known.shape) != want:
        raise ValueError(f"{name}: known must be (B, c + 1, T, H, W) = {want}, got {tuple(known.shape)}")
    return torch.cat([x_t, known.to(x_t.dtype)], dim=1)

"""A Latte-style video diffusion transformer over latent patches (``dit3d``).

Written from DiT (Peebles & Xie 2023) and Latte (Ma et al. 2024): the latent is cut into space-time
patches (``patches.py``), given DiT's fixed 2D sin-cos spatial positions (``positions.py``) and a
temporal position (rotary in the temporal attention, as the paper's U-Net; or Latte's sin-cos /
a learned table added to the tokens), and run through adaLN-Zero transformer blocks (``block.py``)
conditioned on the time embedding plus the condition embedding ``emb``. A final adaLN layer maps each
token back to its patch.

Latte's model variants (Sec. 3.2 / Fig. 2 of its paper) are the ``variant`` field:

* 1 — spatial and temporal blocks interleaved (``depth`` blocks: ``depth / 2`` of each);
* 2 — all spatial blocks first, then all temporal blocks ("late fusion");
* 3 — factorised attention in one block: spatial attention, then temporal attention, then the MLP.

Beyond Latte, the temporal attention can be **causal** (the paper's, Sec. 2.3: a frame never
attends to later frames), so that the denoiser serves vqvdm's long videos and continuations the way
the causal U-Net does; with ``temporal_patch_size: 2`` causality holds between temporal patches.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import Denoiser, PredictionType
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_plugins.dit3d.block import DiTBlock
from vqvdm_plugins.dit3d.modulation import AdaLNZero, modulate
from vqvdm_plugins.dit3d.patches import PatchEmbed, unpatchify
from vqvdm_plugins.dit3d.positions import sincos_2d
from vqvdm_plugins.dit3d.presets import PRESETS, Size
from vqvdm_plugins.embeddings import SinusoidalEmbedding, sinusoidal_encoding
from vqvdm_plugins.frame_conditioning import with_known_frames

__all__ = ["DiT3D"]


def block_axes(variant: int, depth: int) -> list[tuple[str, ...]]:
    """The attention axes of each block, in order, for Latte's ``variant``."""
    if variant == 1:
        return [("spatial",) if i % 2 == 0 else ("temporal",) for i in range(depth)]
    if variant == 2:
        return [("spatial",)] * (depth // 2) + [("temporal",)] * (depth // 2)
    return [("spatial", "temporal")] * depth


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear map of each token to its ``patch_numel`` values; both
    zero-initialised (DiT), so the untrained network predicts 0."""

    def __init__(self, *, width: int, patch_numel: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = AdaLNZero(width=width, chunks=2)
        self.linear = nn.Linear(width, patch_numel)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        shift, scale = self.modulation(cond)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT3D(Denoiser):
    """Latte's factorised video DiT: patch tokens, adaLN-Zero blocks along space and time."""

    class Config(ComponentConfig):
        in_channels: int | None = Field(
            None, ge=1, description="latent channels; filled from tokenizer.latent_channels when unset")
        out_channels: int | None = Field(None, ge=1, description="output channels; unset = in_channels")
        size: Size = Field("S", description="published size preset (DiT / Latte): S 384 wide x 12 blocks x "
                           "6 heads, B 768 x 12 x 12, L 1024 x 24 x 16, XL 1152 x 28 x 16; width, depth "
                           "and heads given here override it")
        width: int | None = Field(None, ge=4, description="token width (and condition embedding width); "
                                  "unset = the preset's")
        depth: int | None = Field(None, ge=1, description="transformer blocks; unset = the preset's")
        heads: int | None = Field(None, ge=1, description="attention heads; unset = the preset's")
        mlp_ratio: float = Field(4.0, gt=0.0, description="MLP hidden width / token width")
        variant: Literal[1, 2, 3] = Field(
            1, description="Latte's variant: 1 spatial and temporal blocks interleaved, 2 spatial blocks "
            "then temporal blocks, 3 spatial and temporal attention in every block")
        patch_size: Literal[1, 2, 4] = Field(2, description="spatial patch size on the latent")
        temporal_patch_size: Literal[1, 2] = Field(1, description="latent frames per token")
        causal: bool = Field(True, description="causal temporal attention (the paper's, Sec. 2.3): no frame "
                             "attends to later frames; false: Latte's full temporal attention")
        temporal_position: Literal["rope", "sincos", "learned", "none"] = Field(
            "rope", description="temporal position: rotary in the temporal attention (relative, any length), "
            "Latte's fixed sin-cos table added to the tokens, a learned table (at most max_frames tokens), "
            "or none (an ablation: with causal attention a frame can still count what it sees)")
        max_frames: int = Field(64, ge=1, description="temporal tokens the learned table holds "
                                "(temporal_position: learned only)")
        time_encoding_dim: int = Field(256, ge=2, description="width of the sinusoidal time-step encoding (DiT: 256)")
        prediction_type: Literal["epsilon", "x0", "v", "velocity"] = Field(
            "epsilon", description="what the network predicts (the paper: epsilon; flow matching: velocity, "
            "eps - x0; edm: x0, read through its preconditioning)")
        known_frames: float = Field(
            0.0, ge=0.0, le=1.0, description="fraction of training clips given a clean prefix of known latent "
            "frames (frame conditioning, as unet3d's), so that continuations and long videos see the given "
            "frames clean; > 0 adds in_channels + 1 input channels")

        @model_validator(mode="after")
        def _shape_is_buildable(self) -> "DiT3D.Config":
            width, depth, heads = self.resolved()
            if width % heads:
                raise ValueError(f"width {width} is not divisible by heads {heads}")
            if width % 4:
                raise ValueError(f"width {width} must be divisible by 4 (the 2D sin-cos positions)")
            if self.temporal_position == "rope" and (width // heads) % 2:
                raise ValueError(f"rotary temporal positions need an even head width; width {width} / "
                                 f"heads {heads} = {width // heads}")
            if self.variant in (1, 2) and depth % 2:
                raise ValueError(f"variant {self.variant} needs an even depth (half spatial, half temporal "
                                 f"blocks), got {depth}")
            return self

        def resolved(self) -> tuple[int, int, int]:
            """``(width, depth, heads)``: the preset's, overridden by the fields that are set."""
            preset = PRESETS[self.size]
            return (self.width or preset.width, self.depth or preset.depth, self.heads or preset.heads)

    def __init__(self, config: "DiT3D.Config | None" = None, **overrides):
        super().__init__()
        self.config = cfg = self.resolve_config(config, overrides)
        if cfg.in_channels is None:
            raise ComponentError(
                "dit3d: in_channels is not set. Set denoiser.in_channels to the tokenizer's latent "
                "channels (4 for the paper's VQGAN), or build the system with build_system(), which "
                "fills it from tokenizer.latent_channels.")
        width, depth, heads = cfg.resolved()
        self.width = width
        self.out_channels = cfg.out_channels or cfg.in_channels
        # With frame conditioning the input is [x_t, known latent, known mask] along channels.
        in_ch = 2 * cfg.in_channels + 1 if cfg.known_frames > 0 else cfg.in_channels
        self.patch_embed = PatchEmbed(in_channels=in_ch, width=width, patch_size=cfg.patch_size,
                                      temporal_patch_size=cfg.temporal_patch_size)
        self.time_embed = SinusoidalEmbedding(encoding_dim=cfg.time_encoding_dim, out_dim=width)
        if cfg.temporal_position == "learned":
            self.temporal_embed = nn.Parameter(torch.zeros(cfg.max_frames, width))
        rope = cfg.temporal_position == "rope"
        self.blocks = nn.ModuleList(
            DiTBlock(width=width, heads=heads, axes=axes, mlp_ratio=cfg.mlp_ratio, causal=cfg.causal, rope=rope)
            for axes in block_axes(cfg.variant, depth))
        patch_numel = cfg.temporal_patch_size * cfg.patch_size ** 2 * self.out_channels
        self.final = FinalLayer(width=width, patch_numel=patch_numel)
        self._initialise()

    def _initialise(self) -> None:
        """DiT's initialisation: Xavier-uniform linear layers with zero biases, N(0, 0.02) for the
        time-embedding MLP; the adaLN regressions and the output layer stay zero (adaLN-Zero)."""
        zero = {id(m.linear) for m in self.modules() if isinstance(m, AdaLNZero)} | {id(self.final.linear)}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in zero:
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.config.temporal_position == "learned":
            # Start from Latte's sin-cos table, then learn it.
            frames = torch.arange(self.config.max_frames, dtype=torch.float32)
            self.temporal_embed.data.copy_(sinusoidal_encoding(frames, self.width))

    # -- Denoiser interface ------------------------------------------------------------------

    @property
    def prediction_type(self) -> PredictionType:
        return self.config.prediction_type

    @property
    def emb_dim(self) -> int:
        """The condition embedding is added to the time embedding at the token width (DiT's ``c``)."""
        return self.width

    @property
    def known_frames_rate(self) -> float:
        return self.config.known_frames

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None, known: Tensor | None = None) -> Tensor:
        """``x_t`` ``(B, c, T, H, W)``, ``t`` ``(B,)`` (or a scalar), ``emb`` ``(B, width)`` or None;
        ``known`` ``(B, c + 1, T, H, W)`` (clean known frames and their mask) with ``known_frames``."""
        cfg = self.config
        self._check_input(x_t)
        b, height, width = x_t.shape[0], x_t.shape[-2], x_t.shape[-1]
        x_t = with_known_frames(x_t, known, enabled=cfg.known_frames > 0, name="dit3d")  # (B, 2c + 1, ...)
        if t.ndim == 0:
            t = t.expand(b)
        cond = self.time_embed(t)  # (B, width)
        if emb is not None:
            cond = cond + emb.to(cond.dtype)

        tokens = self.patch_embed(x_t)  # (B, T', S, width), S = (H/p)(W/p)
        p = cfg.patch_size
        tokens = tokens + sincos_2d(height // p, width // p, self.width, device=tokens.device,
                                    dtype=tokens.dtype)  # (S, width), the same in every frame
        if cfg.temporal_position in ("sincos", "learned"):
            steps = tokens.shape[1]
            if cfg.temporal_position == "learned":
                if steps > cfg.max_frames:
                    raise ValueError(f"dit3d's learned temporal table holds {cfg.max_frames} temporal tokens, "
                                     f"got {steps}: raise max_frames, or use temporal_position: rope")
                table = self.temporal_embed[:steps]
            else:
                table = sinusoidal_encoding(torch.arange(steps, device=tokens.device), self.width)
            tokens = tokens + table.to(tokens.dtype)[:, None]  # (T', 1, width)
        for block in self.blocks:
            tokens = block(tokens, cond)
        out = self.final(tokens, cond)  # (B, T', S, pt * p * p * c)
        return unpatchify(out, channels=self.out_channels, patch_size=p,
                          temporal_patch_size=cfg.temporal_patch_size, height=height)

    def _check_input(self, x: Tensor) -> None:
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(f"dit3d expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"dit3d was built for {cfg.in_channels} input channels, got {x.shape[1]}")
        if x.shape[-2] % cfg.patch_size or x.shape[-1] % cfg.patch_size:
            raise ValueError(f"dit3d with patch_size {cfg.patch_size} needs latent height and width divisible "
                             f"by {cfg.patch_size}, got {x.shape[-2]}x{x.shape[-1]}")
        if x.shape[2] % cfg.temporal_patch_size:
            raise ValueError(f"dit3d with temporal_patch_size {cfg.temporal_patch_size} needs a latent frame count "
                             f"divisible by it, got {x.shape[2]}")

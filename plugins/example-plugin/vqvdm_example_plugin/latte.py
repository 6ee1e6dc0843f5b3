"""``latte_diffusers``: diffusers' ``LatteTransformer3DModel`` as a vqvdm denoiser, wrapped as a
third party would wrap a peer network.

vqvdm's contract gives every denoiser ``forward(x_t, t, emb)``: ``x_t`` ``(B, c, T, h, w)``, ``t``
``(B,)`` integer DDPM time steps and ``emb`` ``(B, emb_dim)``, the SUM of the conditioners'
embeddings (class + FPS + ...), never split by condition. Latte does not add a condition to its time
embedding: the time step drives its adaLN-single modulation, and conditions come in PixArt-style as
``encoder_hidden_states`` that its spatial blocks cross-attend to. So this wrapper passes ``emb`` as
ONE token ``(B, 1, emb_dim)``; Latte's own caption projection maps it to the model width. With a
single key the attention weights are all 1: each spatial block adds a learned projection of ``emb``
to every token of every frame (a per-clip shift of the residual stream, not a modulation). That is
the case the contract must cover: the network receives ``emb`` as a ``(B, emb_dim)`` vector and
decides how to use it; :attr:`emb_dim` says how wide the conditioners must make it.

diffusers is an optional extra of this distribution (``pip install ./plugins/example-plugin[latte]``),
imported only when the denoiser is built, so listing and recipe validation work without it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import Denoiser, PredictionType
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["LatteDenoiser"]


class LatteDenoiser(Denoiser):
    """Latte (diffusers' LatteTransformer3DModel): the summed condition embedding is one cross-attention token."""

    class Config(ComponentConfig):
        in_channels: int | None = Field(
            None, ge=1, description="latent channels; filled from tokenizer.latent_channels when unset")
        num_attention_heads: int = Field(8, ge=1, description="attention heads")
        attention_head_dim: int = Field(64, ge=1, description="channels per head (model width = heads * this)")
        num_layers: int = Field(12, ge=1, description="spatial + temporal transformer block pairs")
        sample_size: int = Field(16, ge=1, description="latent frame height and width (sizes Latte's "
                                 "position table; other sizes are interpolated)")
        num_frames: int = Field(4, ge=1, description="latent frames per clip (Latte's temporal position "
                                "table: inputs must have exactly this many)")
        patch_size: int = Field(2, ge=1, description="spatial patch size; latent h and w must be multiples")
        emb_dim: int | None = Field(None, ge=1, description="width of the condition embedding the "
                                    "conditioners produce; unset = the model width")
        norm_type: Literal["ada_norm_single", "layer_norm"] = Field(
            "ada_norm_single", description="ada_norm_single: the time step modulates every block (Latte); "
            "layer_norm: only the output")
        activation_fn: Literal["gelu-approximate", "geglu", "gelu"] = Field(
            "gelu-approximate", description="feed-forward activation")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside the blocks")
        prediction_type: Literal["epsilon", "x0", "v", "velocity"] = Field("epsilon", description="what the network predicts")

        @model_validator(mode="after")
        def _patches_fit(self) -> "LatteDenoiser.Config":
            if self.sample_size % self.patch_size:
                raise ValueError(f"sample_size {self.sample_size} is not a multiple of patch_size {self.patch_size}")
            return self

    def __init__(self, config: "LatteDenoiser.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        if c.in_channels is None:
            raise ComponentError(
                "latte_diffusers: in_channels is not set. Set denoiser.in_channels to the tokenizer's "
                "latent channels, or build the system with build_system(), which fills it.")
        try:
            from diffusers import LatteTransformer3DModel
        except ImportError as exc:
            raise ComponentError(f"latte_diffusers needs diffusers ({exc}): "
                                 "pip install 'vqvdm-example-plugin[latte]'") from None
        width = c.num_attention_heads * c.attention_head_dim
        self._emb_dim = c.emb_dim or width
        self.model = LatteTransformer3DModel(
            num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
            in_channels=c.in_channels, out_channels=c.in_channels,  # no learned sigma: one prediction
            num_layers=c.num_layers, dropout=c.dropout, sample_size=c.sample_size, patch_size=c.patch_size,
            video_length=c.num_frames, norm_type=c.norm_type, activation_fn=c.activation_fn,
            cross_attention_dim=width, caption_channels=self._emb_dim)

    @property
    def prediction_type(self) -> PredictionType:
        return self.config.prediction_type

    @property
    def emb_dim(self) -> int:
        return self._emb_dim

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor | None = None, known: Tensor | None = None) -> Tensor:
        """``x_t`` ``(B, c, T, h, w)`` (Latte's own layout), ``t`` ``(B,)`` or a scalar, ``emb``
        ``(B, emb_dim)`` or None (a zero token: no condition) -> prediction of ``x_t``'s shape."""
        c = self.config
        if known is not None:
            raise ValueError("latte_diffusers takes no known frames (known_frames_rate is 0)")
        if x_t.ndim != 5 or x_t.shape[1] != c.in_channels or x_t.shape[2] != c.num_frames:
            raise ValueError(f"latte_diffusers was built for (B, {c.in_channels}, {c.num_frames}, h, w) latents "
                             f"(in_channels, num_frames), got {tuple(x_t.shape)}")
        if x_t.shape[-2] % c.patch_size or x_t.shape[-1] % c.patch_size:
            raise ValueError(f"latte_diffusers: latent h and w must be multiples of patch_size "
                             f"{c.patch_size}, got {x_t.shape[-2]}x{x_t.shape[-1]}")
        b = x_t.shape[0]
        if emb is None:
            emb = x_t.new_zeros((b, self._emb_dim))
        tokens = emb.to(x_t.dtype).reshape(b, 1, self._emb_dim)  # one cross-attention token per clip
        t = t.expand(b) if t.ndim == 0 else t
        return self.model(x_t, timestep=t, encoder_hidden_states=tokens, return_dict=False)[0]

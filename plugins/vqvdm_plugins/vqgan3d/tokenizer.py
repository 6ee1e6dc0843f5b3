"""``vqgan3d``: the paper's 3D VQGAN video tokenizer (Sec. 2.2, Eq. 1-5).

A 3x16x128x128 clip encodes to a 4x4x16x16 quantized latent (time / 4, space / 8, 4 channels) and
decodes back. Training minimises Eq. 5,

    L = ||x - x_hat||^2 + LPIPS(x, x_hat) + l1 L_vq + l2 L_adv + l3 L_fm,   (l1, l2, l3) = (1, 0.5, 1)

with the discriminator terms switched on after ``discriminator_start`` (10,000) steps. The
generator (encoder, quantizer, decoder) and the discriminator are two optimizer groups.
See ``docs/components/vqgan3d.md`` for where we follow the paper, TATS and LDM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from vqvdm_core.errors import UserError, missing_file_messages
from vqvdm_core.interfaces import Quantized, Quantizer, TrainStep, VideoTokenizer, iter_parameters
from vqvdm_core.interfaces.configurable import ComponentConfig, FilePurpose
from vqvdm_plugins.vqgan3d.decoder import Decoder
from vqvdm_plugins.vqgan3d.discriminator import VideoDiscriminator
from vqvdm_plugins.vqgan3d.encoder import Encoder, resampling_plan
from vqvdm_plugins.vqgan3d.losses import (adversarial_factor, discriminator_loss, feature_matching_loss,
                                          generator_adversarial_loss)
from vqvdm_plugins.vqgan3d.perceptual import PerceptualLoss, require_vgg16
from vqvdm_plugins.vqgan3d.quantizer_node import VQ_FIELDS, build_quantizer, quantizer_node

__all__ = ["VQGAN3D"]


def _scalar(value: Tensor) -> Tensor:
    """A logged term: detached, left on the device (the trainer reads it on the host when it records
    it, not every step: a read is a wait for the GPU)."""
    return value.detach()


class VQGAN3D(VideoTokenizer):
    """The paper's 3D VQGAN: 3D-conv encoder/decoder, vector quantizer, LPIPS and a 3D discriminator."""

    class Config(ComponentConfig):
        # -- architecture (paper: factors and latent; LDM VQ-f8: widths) ------------------------
        latent_channels: int = Field(4, ge=1, description="channels of the latent = code dimension")
        temporal_factor: int = Field(4, ge=1, description="time downsampling (power of two)")
        spatial_factor: int = Field(8, ge=1, description="height/width downsampling (power of two)")
        channels: int = Field(128, ge=1, description="base width of encoder and decoder")
        channel_mults: tuple[int, ...] = Field(
            (1, 2, 2, 4), description="width multiplier per level; one more entry than the number of "
            "halvings, i.e. log2(max(temporal_factor, spatial_factor)) + 1")
        num_res_blocks: int = Field(
            2, ge=0, description="residual blocks per level; 0: levels are joined by the resampling "
            "convolutions alone, which then change the width")
        mid_blocks: int = Field(2, ge=0, description="residual blocks at the lowest resolution, in the "
                                "encoder and in the decoder")
        norm_groups: int = Field(32, ge=0, description="GroupNorm groups at most (fewer when a width would "
                                 "leave groups under 4 channels); 0: no normalisation layers")
        upsample: Literal["nearest", "transposed"] = Field(
            "nearest", description="decoder upsampling: nearest + 3x3x3 conv (LDM) or a transposed conv (TATS)")
        spatial_padding: Literal["zeros", "replicate", "reflect"] = Field(
            "replicate", description="padding in height/width (time is always replicate, as the paper)")

        # -- quantizer (paper: beta; LDM VQ-f8: codebook size) ----------------------------------
        num_codes: int = Field(16384, ge=2, description="codebook entries")
        beta: float = Field(0.25, ge=0, description="commitment weight in Eq. 2")
        codebook_ema: bool = Field(False, description="EMA codebook updates instead of the codebook loss")
        codebook_ema_decay: float = Field(0.99, gt=0, lt=1, description="decay of EMA codebook and usage")
        codebook_init_from_data: bool = Field(False, description="fill the codebook from the first batch")
        dead_code_threshold: float | None = Field(
            None, gt=0, description="re-seed codes whose running usage (vectors per batch) falls below "
            "this from the current batch's encoder outputs; null disables (TATS: 1.0)")
        codebook_l2_normalize: bool = Field(False, description="cosine-similarity lookup on unit vectors")
        decode_quantizes: bool = Field(
            False, description="snap latents to the codebook in decode (off: decode any latent as is)")
        quantizer: dict[str, Any] | None = Field(
            None, description="the quantizer as a node, e.g. {name: fsq, levels: [8, 5, 5, 5]} (vq, fsq, lfq, kl "
            "or a plug-in's); its channels (vq: code_dim) are wired from latent_channels. null: the paper's vq "
            "with the fields above (num_codes, beta, codebook_*)")

        # -- losses (paper Eq. 1-5) -------------------------------------------------------------
        l2_weight: float = Field(1.0, ge=0, description="weight of ||x - x_hat||^2 (Eq. 1)")
        perceptual_weight: float = Field(1.0, ge=0, description="weight of LPIPS (Eq. 1); 0 skips building it")
        perceptual_pretrained: bool = Field(
            True, description="ImageNet VGG16 for LPIPS (needs vgg16-397923af.pth); false: random "
            "backbone, tests/demos only")
        perceptual_frames: int | None = Field(
            None, ge=1, description="LPIPS on this many random frames per clip; null: all frames")
        vq_weight: float = Field(1.0, ge=0, description="lambda1 (Eq. 5)")
        adversarial_weight: float = Field(0.5, ge=0, description="lambda2 (Eq. 5)")
        feature_matching_weight: float = Field(1.0, ge=0, description="lambda3 (Eq. 5)")
        discriminator_start: int = Field(10000, ge=0, description="step at which the GAN terms switch on")
        adversarial_warmup: int = Field(
            0, ge=0, description="steps over which the GAN weights ramp linearly from 0 after the switch-on")
        gan_loss: Literal["bce", "hinge"] = Field("bce", description="bce (the paper's log D) or hinge")
        disc_channels: int = Field(64, ge=1, description="width of the discriminator's first layer")
        disc_layers: int = Field(3, ge=1, description="hidden stride-2 layers of the discriminator")

        @field_validator("temporal_factor", "spatial_factor")
        @classmethod
        def _power_of_two(cls, value: int) -> int:
            if value & (value - 1):
                raise ValueError(f"must be a power of two, got {value}")
            return value

        @field_validator("quantizer", mode="before")
        @classmethod
        def _quantizer_node(cls, node: Any) -> Any:
            return None if node is None else quantizer_node(node)

        @model_validator(mode="after")
        def _one_quantizer(self) -> "VQGAN3D.Config":
            if self.quantizer is None:
                return self
            given = [name for name in VQ_FIELDS
                     if getattr(self, name) != type(self).model_fields[name].get_default()]
            if given:
                raise ValueError(
                    f"{', '.join(given)} {'is a setting' if len(given) == 1 else 'are settings'} of the built-in "
                    f"vq quantizer, but quantizer is '{self.quantizer['name']}': remove "
                    f"{'it' if len(given) == 1 else 'them'}, or give the vq quantizer as a node "
                    f"(quantizer: {{name: vq, {VQ_FIELDS[given[0]]}: ...}})")
            built = build_quantizer(self, device="meta")
            if built.latent_channels != self.latent_channels:
                raise ValueError(
                    f"the quantizer '{self.quantizer['name']}' makes {built.latent_channels}-channel latents but "
                    f"latent_channels is {self.latent_channels}: make them agree (set latent_channels: "
                    f"{built.latent_channels}, or change the quantizer's channels / levels)")
            return self

        @model_validator(mode="after")
        def _levels_match_factors(self) -> "VQGAN3D.Config":
            levels = len(resampling_plan(self.temporal_factor, self.spatial_factor)) + 1
            if len(self.channel_mults) != levels:
                raise ValueError(
                    f"channel_mults has {len(self.channel_mults)} entries but factors "
                    f"{self.temporal_factor}x{self.spatial_factor}x{self.spatial_factor} need {levels} "
                    f"(one per level: log2 of the larger factor, plus one)")
            return self

    def __init__(self, config: "VQGAN3D.Config | None" = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        arch = dict(channels=c.channels, channel_mults=c.channel_mults, num_res_blocks=c.num_res_blocks,
                    latent_channels=c.latent_channels, temporal_factor=c.temporal_factor,
                    spatial_factor=c.spatial_factor, norm_groups=c.norm_groups,
                    spatial_padding=c.spatial_padding, mid_blocks=c.mid_blocks)
        # The encoder is built first, then the quantizer, as always (the order of their random
        # initialisations): the channels the encoder must output come from a probe built on meta.
        encoder_out = build_quantizer(c, device="meta").input_channels
        self.encoder = Encoder(**{**arch, "latent_channels": encoder_out})
        self.quantizer: Quantizer = build_quantizer(c)
        self.decoder = Decoder(**arch, upsample=c.upsample)
        self.discriminator: VideoDiscriminator | None = None
        if c.adversarial_weight > 0 or c.feature_matching_weight > 0:
            self.discriminator = VideoDiscriminator(channels=c.disc_channels, num_layers=c.disc_layers,
                                                    norm_groups=c.norm_groups)
        # LPIPS is a fixed loss network: kept out of the module tree so it is neither in the state
        # dict (checkpoints stay small and load whatever the perceptual settings) nor trained.
        self._perceptual: list[PerceptualLoss] = []
        if c.perceptual_weight > 0:
            self._perceptual.append(PerceptualLoss(pretrained=c.perceptual_pretrained,
                                                   frames=c.perceptual_frames))

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """Training with the perceptual loss needs the ImageNet VGG16 file; nothing else does."""
        if purpose != "train" or config.perceptual_weight <= 0 or not config.perceptual_pretrained:
            return []
        return missing_file_messages(require_vgg16)

    # -- VideoTokenizer ------------------------------------------------------------------------

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        c = self.config
        ft, fs = c.temporal_factor, c.spatial_factor
        if frames % ft or height % fs or width % fs:
            raise UserError(
                f"clip size {frames}x{height}x{width} (frames x height x width) is not divisible by the "
                f"vqgan3d factors {ft}x{fs}x{fs}; change the clip size or temporal_factor/spatial_factor")
        return (c.latent_channels, frames // ft, height // fs, width // fs)

    def encode(self, video: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> latent ``(B, latent_channels, T/ft, H/fs, W/fs)``: quantized (a ``kl``
        quantizer's posterior mean in eval mode, a sample in training mode)."""
        return self.quantizer(self.encode_continuous(video)).latent

    def encode_continuous(self, video: Tensor) -> Tensor:
        """The encoder output ``z_e`` before quantization."""
        self.latent_shape(*video.shape[2:])
        return self.encoder(video)

    def decode(self, latent: Tensor, *, quantize: bool | None = None) -> Tensor:
        """Any latent ``(B, c, t, h, w)`` -> video ``(B, 3, t*ft, h*fs, w*fs)``; ``quantize`` (default:
        the config's ``decode_quantizes``) snaps it to the codebook first."""
        if latent.shape[1] != self.config.latent_channels:
            raise ValueError(f"latent has {latent.shape[1]} channels, vqgan3d expects "
                             f"{self.config.latent_channels}")
        if self.config.decode_quantizes if quantize is None else quantize:
            latent = self.quantizer.snap(latent)
        return self.decoder(latent)

    @property
    def decode_context(self) -> int | None:
        """The decoder's temporal reach in latent frames (None with GroupNorm: whole decodes only)."""
        return self.decoder.temporal_reach()

    def inference_config(self) -> "VQGAN3D.Config":
        """The config without the loss networks (no LPIPS, no discriminator): an exported pipeline
        holds encoder, quantizer and decoder only, and encode and decode are unchanged."""
        return self.config.model_copy(update={"perceptual_weight": 0.0, "adversarial_weight": 0.0,
                                              "feature_matching_weight": 0.0})

    # -- Trainable -----------------------------------------------------------------------------

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"generator": iter_parameters([self.encoder, self.quantizer, self.decoder])}
        if self.discriminator is not None:
            groups["discriminator"] = iter_parameters([self.discriminator])
        return groups

    def perceptual_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """LPIPS between ``real`` and ``fake`` (moves the loss network to their device on first use)."""
        if not self._perceptual:
            raise RuntimeError("perceptual_weight is 0: no LPIPS network was built")
        return self._perceptual[0](real, fake)

    def reconstruct(self, video: Tensor, *, update_codebook: bool = False) -> tuple[Tensor, Quantized]:
        """Encode, quantize and decode ``video``; ``update_codebook`` runs the codebook's training
        updates (EMA, data init, dead-code re-seeding)."""
        z = self.encode_continuous(video)
        quant = self.quantizer(z, update=update_codebook)
        return self.decoder(quant.latent), quant

    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        """Losses of Eq. 5 for one batch: ``{"generator": ..., "discriminator": ...}``.

        Before ``discriminator_start`` the discriminator is not run at all and its loss is a
        constant zero with no graph: no gradient reaches its parameters, so the engine's optimizer
        skips them (no update, no weight decay, and Adam moments that start at the switch-on step
        instead of 10,000 steps of zeros). The dormant discriminator then costs nothing per step
        (it is 90 % of the quickstart tokenizer's parameters).
        """
        c = self.config
        video: Tensor = batch["video"]
        if self.discriminator is not None:
            self._check_discriminator_fits(video)
        recon, quant = self.reconstruct(video, update_codebook=self.training)

        l2 = F.mse_loss(recon.float(), video.float())
        g_loss = c.l2_weight * l2 + c.vq_weight * quant.loss
        logs: dict[str, float | Tensor] = {"l2": _scalar(l2), **{k: _scalar(v) for k, v in quant.stats.items()},
                                  "vq": _scalar(quant.loss)}
        with torch.no_grad():
            mse = torch.mean((recon.detach().float().clamp(-1, 1) - video.float()) ** 2)
            logs["psnr"] = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))  # peak-to-peak 2
        if self._perceptual:
            perceptual = self.perceptual_loss(video, recon)
            g_loss = g_loss + c.perceptual_weight * perceptual
            logs["perceptual"] = _scalar(perceptual)

        losses = {"generator": g_loss}
        if self.discriminator is not None:
            factor = adversarial_factor(step, start=c.discriminator_start, warmup=c.adversarial_warmup)
            logs["gan_factor"] = factor
            if factor > 0:
                g_gan, d_loss, gan_logs = self._gan_losses(video, recon, factor)
                g_loss = g_loss + g_gan
                logs.update(gan_logs)
            else:
                d_loss = torch.zeros((), device=video.device)  # no graph: nothing to step
            losses = {"generator": g_loss, "discriminator": d_loss}
            logs["discriminator"] = _scalar(d_loss)
        logs["generator"] = _scalar(g_loss)
        return TrainStep(losses=losses, logs=logs)

    def _check_discriminator_fits(self, video: Tensor) -> None:
        """Fail at step 0, not at the switch-on step, when frames are too small for the discriminator."""
        need = 2 ** (self.config.disc_layers + 1)
        height, width = video.shape[-2:]
        if height < need or width < need:
            raise UserError(
                f"frames of {height}x{width} are too small for the vqgan3d discriminator with "
                f"disc_layers={self.config.disc_layers} (it halves them {self.config.disc_layers + 1} "
                f"times; needs at least {need}x{need}); lower disc_layers")

    def _gan_losses(self, video: Tensor, recon: Tensor, factor: float) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(generator GAN terms already weighted, discriminator loss, logs)."""
        c = self.config
        assert self.discriminator is not None
        # Discriminator pass on real and (detached) fake together: its loss reaches only D.
        logits_d, features_d = self.discriminator(torch.cat([video, recon.detach()]))
        logits_real, logits_fake_d = logits_d.chunk(2)
        d_loss = discriminator_loss(logits_real, logits_fake_d, c.gan_loss)
        # Generator pass on the live reconstruction; real features are detached targets.
        logits_fake, features_fake = self.discriminator(recon)
        features_real = [f.chunk(2)[0].detach() for f in features_d]
        adv = generator_adversarial_loss(logits_fake, c.gan_loss)
        fm = feature_matching_loss(features_real, features_fake)
        g_gan = factor * (c.adversarial_weight * adv + c.feature_matching_weight * fm)
        logs = {"adversarial": _scalar(adv), "feature_matching": _scalar(fm),
                "d_logits_real": _scalar(logits_real.float().mean()),
                "d_logits_fake": _scalar(logits_fake_d.float().mean())}
        return g_gan, d_loss, logs

"""The latent video diffusion system: tokenizer + denoiser + schedule + conditioners + guidance.

:class:`LatentVideoDiffusion` composes built components through their interfaces only (it never
imports a plug-in), trains the denoiser on the frozen tokenizer's latents (paper Sec. 2.4, Eqs.
7-8) and samples with guidance (Eq. 9). :func:`build_system` builds one from a recipe, wiring the
fields one component derives from another::

    system = LatentVideoDiffusion(
        tokenizer=tok, denoiser=unet, schedule=ddpm, conditioners=[fps, label], guidance=cfg,
        clip_shape=(16, 128, 128))
    video = system.sample(4, labels=[0, 1, 2, 3], fps=[25.0] * 4, steps=100)  # (4, 3, 16, 128, 128)
    fast = system.sample(4, labels=[0, 1, 2, 3], fps=[25.0] * 4, steps=10, sampler="dpmpp_2m")
    system.save_pretrained("exports/model")            # a folder any machine with the plug-ins loads
    same = LatentVideoDiffusion.from_pretrained("exports/model")

The sampler is a plug-in of its own kind (:class:`~vqvdm_core.interfaces.Sampler`): a built one, a
registered name or a recipe node; without one, the schedule's default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError, UserError, state_dict_mismatch
from vqvdm_core.interfaces import (
    NO_LABEL,
    Conditioner,
    Denoiser,
    Guidance,
    NoiseSchedule,
    Sampler,
    Trainable,
    TrainStep,
    VideoTokenizer,
)
from vqvdm_core.interfaces.sampler import (
    DenoiseFn,
    SamplingChain,
    StepCallback,
    reporting,
    resolve_sampler,
    run_sampler,
    sampling_chain,
)
from vqvdm_core.io.pixels import uint8_to_unit_range
from vqvdm_core.registry import REGISTRY, Registry
from vqvdm_core.runtime import distributed as dist
from vqvdm_core.system.long_video import (
    Window,
    check_known_frames_settings,
    condition_on_known,
    decode_in_chunks,
    plan_windows,
)

__all__ = ["LatentVideoDiffusion", "WIRED_FIELDS", "build_system"]

EmbedMode = Literal["train", "cond", "uncond"]


class LatentVideoDiffusion(nn.Module, Trainable):
    """A denoiser trained on a frozen tokenizer's latents, sampled with guidance.

    Only the denoiser and the conditioners learn (optimizer group ``"denoiser"``); the tokenizer is
    frozen and kept in eval mode. ``latent_scale`` multiplies latents before diffusion so that they
    have unit variance (the pipeline sets it from the cached latents), and divides samples before
    decoding.
    """

    latent_scale: Tensor

    def __init__(
        self,
        *,
        tokenizer: VideoTokenizer,
        denoiser: Denoiser,
        schedule: NoiseSchedule,
        conditioners: Sequence[Conditioner] = (),
        guidance: Guidance | None = None,
        clip_shape: tuple[int, int, int],
        latent_scale: float = 1.0,
        sampler: Sampler | None = None,
        registry: Registry = REGISTRY,
    ):
        super().__init__()
        for name, obj, interface in (("tokenizer", tokenizer, VideoTokenizer), ("denoiser", denoiser, Denoiser),
                                     ("schedule", schedule, NoiseSchedule)):
            if not isinstance(obj, interface):
                raise ComponentError(f"{name} must be a built {interface.__name__}, got {type(obj).__name__}")
        for cond in conditioners:
            if not isinstance(cond, Conditioner):
                raise ComponentError(f"conditioners must be built Conditioners, got {type(cond).__name__}")
        if guidance is not None and not isinstance(guidance, Guidance):
            raise ComponentError(f"guidance must be a built Guidance, got {type(guidance).__name__}")
        if sampler is not None and not isinstance(sampler, Sampler):
            raise ComponentError(f"sampler must be a built Sampler, got {type(sampler).__name__}")
        if len(clip_shape) != 3:
            raise UserError(f"clip_shape must be (frames, height, width), got {tuple(clip_shape)}")

        self.tokenizer = tokenizer
        self.tokenizer.requires_grad_(False)
        self.tokenizer.eval()
        self.denoiser = denoiser
        self.conditioners = nn.ModuleList(conditioners)
        self.schedule = schedule
        schedule.check_prediction_type(denoiser.prediction_type)
        self.guidance = guidance
        self.sampler = sampler
        """The default sampler of :meth:`sample` (None: the schedule's default)."""
        self.registry = registry
        """Where sampler names given to :meth:`sample` are looked up."""
        self.clip_shape: tuple[int, int, int] = tuple(int(s) for s in clip_shape)  # type: ignore[assignment]
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale)), persistent=True)
        self.data_info: dict[str, Any] = {}
        """What the training data held, when known: ``num_classes``, ``class_names`` and
        ``fps_values`` (the FPS values seen). Set by :meth:`from_pretrained`, stored by
        :meth:`save_pretrained`."""
        self.sample_settings: dict[str, Any] = {}
        """The recipe's default sample settings (``steps``, ``guidance_scale``, ``known_guidance``...,
        as the recipe's ``sample`` section), when known. Set by :meth:`from_pretrained`, stored by
        :meth:`save_pretrained`; :meth:`sample` itself does not read them."""

    # -- pretrained folders ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str | None = None,
                        registry: Registry = REGISTRY) -> "LatentVideoDiffusion":
        """Rebuild a system from a pipeline folder (``vqvdm export``, :meth:`save_pretrained`).

        Every file is checked against the sha256 in the folder's ``model_index.json`` first; configs
        are JSON and weights safetensors (nothing is unpickled). Component classes are looked up in
        ``registry`` by the names the index stores, so a third-party plug-in's component loads
        wherever that plug-in is installed. Ready to :meth:`sample`, in eval mode, on ``device``
        (default: the CPU); :attr:`data_info` and :attr:`sample_settings` are filled.
        """
        from vqvdm_core.system.pretrained import read_pretrained

        parts = read_pretrained(path, registry=registry)
        system = cls(**parts.components)
        system.data_info = dict(parts.data_info)
        system.sample_settings = dict(parts.sample_settings)
        system.eval()
        return system.to(device) if device is not None else system

    def save_pretrained(self, path: str | Path, *, overwrite: bool = False,
                        extra_files: Mapping[str, str | bytes] | None = None) -> Path:
        """Write this system as a pipeline folder that :meth:`from_pretrained` loads; return its path.

        Each component goes in its own folder as ``config.json`` (its registered name and every
        field) and ``weights.safetensors``; ``system.json`` holds the clip shape, the latent scale,
        :attr:`data_info` and :attr:`sample_settings`; ``model_index.json`` lists every file with
        its sha256. A non-empty ``path`` is refused unless ``overwrite`` (which replaces only a
        pipeline folder). ``extra_files`` (relative path -> text or bytes) are added and listed.
        """
        from vqvdm_core.system.pretrained import save_pretrained

        return save_pretrained(self, path, overwrite=overwrite, extra_files=extra_files)

    # -- shapes and state -----------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """``(c, t, h, w)`` of the latent of one clip of ``clip_shape``."""
        return tuple(self.tokenizer.latent_shape(*self.clip_shape))  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return self.latent_scale.device

    def set_latent_scale(self, value: float) -> None:
        """Set the factor that normalises latents to unit variance (``z_train = latent * scale``)."""
        self.latent_scale.fill_(float(value))

    def train(self, mode: bool = True) -> "LatentVideoDiffusion":
        """Switch denoiser and conditioners; the frozen tokenizer always stays in eval mode."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"denoiser": denoiser + conditioner parameters}``; the tokenizer's are never included."""
        seen: set[int] = {id(p) for p in self.tokenizer.parameters()}
        params: list[nn.Parameter] = []
        for module in (self.denoiser, *self.conditioners):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return {"denoiser": params}

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """Everything but the frozen tokenizer's weights (denoiser, conditioners, ``latent_scale``)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("tokenizer.")}

    def load_checkpoint_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load what :meth:`checkpoint_state_dict` saved; tokenizer keys, if present, are ignored."""
        expected = set(self.checkpoint_state_dict())
        given = {k for k in state_dict if not k.startswith("tokenizer.")}
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if missing or unexpected:
            raise UserError(
                "the checkpoint does not match this system (was it trained with another denoiser or "
                f"conditioner configuration?): missing {_short(missing)}; unexpected {_short(unexpected)}")
        try:
            self.load_state_dict({k: state_dict[k] for k in expected}, strict=False)
        except RuntimeError as exc:
            raise UserError(f"the checkpoint does not match this system: {state_dict_mismatch(exc)}") from None

    # -- conditioning ---------------------------------------------------------------------------

    def embed(self, batch_fields: Mapping[str, Any], *, mode: EmbedMode,
              generator: torch.Generator | None = None) -> Tensor | None:
        """Sum of the conditioner embeddings ``(B, D)``, or None when there are no conditioners.

        ``mode="train"`` applies each conditioner's condition dropout; ``"cond"`` uses the values as
        given; ``"uncond"`` replaces the values of guided conditioners (the class) with their null
        value and keeps the others (FPS), as in the paper's Eq. 7.
        """
        if mode not in ("train", "cond", "uncond"):
            raise ValueError(f"mode must be 'train', 'cond' or 'uncond', got {mode!r}")
        total: Tensor | None = None
        for cond in self.conditioners:
            if cond.field not in batch_fields or batch_fields[cond.field] is None:
                raise UserError(f"{type(cond).__name__} reads the batch field '{cond.field}', which is missing")
            values = torch.as_tensor(batch_fields[cond.field], device=self.device)
            if mode == "train":
                values = _drop_for_global_batch(cond, values, generator)
            elif mode == "uncond" and cond.guided:
                values = cond.null(values.shape[0], device=values.device)
            emb = cond(values)
            total = emb if total is None else total + emb
        return total

    # -- training -------------------------------------------------------------------------------

    def training_step(self, batch: Mapping[str, Any], *, step: int) -> TrainStep:
        """The denoising loss: the schedule's (weighted) MSE between the denoiser output and its target.

        The paper's DDPM loss (Eqs. 7-8) is the plain mean; a schedule's
        :meth:`~vqvdm_core.interfaces.NoiseSchedule.loss_weight` (min-SNR, EDM's) weights each clip.
        """
        z0 = self.scaled_latent(batch)
        b = z0.shape[0]
        # Each draw is made for the global batch and this process keeps its rows (alone: the plain
        # draw), so the run does not depend on how many processes share the batch.
        t = dist.draw_for_global_batch(lambda n: self.schedule.sample_timesteps(n, device=z0.device), b)
        noise = dist.draw_for_global_batch(
            lambda n: torch.randn((n, *z0.shape[1:]), device=z0.device, dtype=z0.dtype), b)
        kind = self.denoiser.prediction_type
        z_t = self.schedule.add_noise(z0, noise, t)
        net_input = self.schedule.model_input(z_t, t)
        emb = self.embed(batch, mode="train")
        target = self.schedule.training_target(z0, noise, t, kind)
        weight = self.schedule.loss_weight(t, kind)
        if weight is not None:
            weight = weight.to(z0.device).reshape(b, *([1] * (z0.ndim - 1)))  # (B, 1, 1, 1, 1)
        if self.denoiser.known_frames_rate <= 0:
            prediction = self.denoiser(net_input, t, emb)
            if weight is None:
                loss = F.mse_loss(prediction.float(), target.float())
            else:
                loss = ((prediction.float() - target.float()).pow(2) * weight).mean()
            return TrainStep(losses={"denoiser": loss}, logs={"loss": loss.detach()})  # read when recorded
        # Frame conditioning: some clips get a clean known prefix; the loss covers the other frames.
        frames, h, w = z0.shape[2:]
        all_lengths = dist.draw_global(
            lambda n: known_lengths(n, frames, rate=self.denoiser.known_frames_rate, device=z0.device), b)
        known = known_input_of_lengths(z0, dist.local_rows(all_lengths, b))
        prediction = self.denoiser(net_input, t, emb, known=known)
        unknown = 1.0 - known[:, -1:]  # (B, 1, T, h, w)
        squared = (prediction.float() - target.float()).pow(2) * unknown
        if weight is not None:
            squared = squared * weight
        # The mean over the global batch's unknown frames: normalised by the shares' mean count (from
        # the global draw of prefix lengths), the loss averaged over shares is the one a single
        # process computes.
        count = ((frames - all_lengths) * (h * w)).sum().float() / dist.batch_share()[1]
        loss = squared.sum() / (count * z0.shape[1]).clamp_min(1.0)
        return TrainStep(losses={"denoiser": loss},
                         logs={"loss": loss.detach(), "known_fraction": (1.0 - unknown.mean()).detach()})

    def forward(self, batch: Mapping[str, Any], *, step: int = 0) -> TrainStep:
        """Same as :meth:`training_step`, so that a ``DistributedDataParallel`` wrapper can call it."""
        return self.training_step(batch, step=step)

    def scaled_latent(self, batch: Mapping[str, Any]) -> Tensor:
        """``batch["latent"]`` (cached, unscaled) or the encoded ``batch["video"]``, times ``latent_scale``."""
        if "latent" in batch and batch["latent"] is not None:
            z = torch.as_tensor(batch["latent"]).to(self.device, torch.float32)
        elif "video" in batch and batch["video"] is not None:
            video = torch.as_tensor(batch["video"]).to(self.device)
            if video.dtype == torch.uint8:
                video = uint8_to_unit_range(video)
            with torch.no_grad():
                z = self.tokenizer.encode(video.float()).float()
        else:
            raise UserError("a training batch needs 'latent' (cached latents) or 'video'")
        return z * self.latent_scale

    # -- sampling -------------------------------------------------------------------------------

    def resolve_sampler(self, sampler: Any = None) -> Sampler:
        """A built sampler from a built one, a registered name or a node; None: this system's
        default (:attr:`sampler`), else the schedule's."""
        return resolve_sampler(sampler if sampler is not None else self.sampler, schedule=self.schedule,
                               registry=self.registry)

    @torch.no_grad()
    def sample(
        self,
        num: int,
        *,
        labels: Sequence[int] | Tensor | None = None,
        fps: Sequence[float] | Tensor | None = None,
        conditions: Mapping[str, Any] | None = None,
        steps: int | None = None,
        sampler: Any = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int], None] | None = None,
        callback: StepCallback | None = None,
        x_t: Tensor | None = None,
        start_step: float | None = None,
        decode: bool = True,
        decode_batch_size: int | None = None,
        frames: int | None = None,
        context: Tensor | None = None,
        overlap: int | None = None,
        known_frames: str = "replacement",
        reconstruction_weight: float = 2.0,
        known_guidance: float = 1.0,
    ) -> Tensor:
        """Generate ``num`` clips: video ``(num, 3, T, H, W)`` in [-1, 1], or the latent if not ``decode``.

        ``conditions`` maps each conditioner's field to its values, one per clip or one for all
        (``{"label": [0, 1], "fps": 8.0, "motion": [0.2, 0.9]}``); ``labels=``/``fps=`` are the same
        as ``conditions={"label": ..., "fps": ...}`` (giving a field both ways is refused). A guided
        conditioner (the class) without values samples its null value (unconditional); any other
        conditioner without values uses its default or raises, naming the field. A field that no
        conditioner reads is refused (except ``label`` / ``fps`` values that are all null).
        ``steps`` respaces the chain (``None``: every training step); ``sampler`` is a built
        :class:`~vqvdm_core.interfaces.Sampler`, a registered name (``"dpmpp_2m"``) or a node
        (``{"name": "ddim", "eta": 0.5}``), default :attr:`sampler` or the schedule's;
        ``guidance_scale`` overrides the guidance's. All noise comes from ``generator``.

        SDEdit-style editing starts mid-chain: ``x_t`` is the *scaled* latent state at the schedule's
        time value ``start_step`` (DDPM: a training step; ``schedule.add_noise(z0 * latent_scale,
        noise, t)``) and the chain runs from there to the clean end. ``callback`` sees every level (:class:`~vqvdm_core.interfaces.sampler.SamplerStep`,
        scaled units); ``progress(i, n)`` is called after each. Decoding runs in chunks of
        ``decode_batch_size`` clips (default: see :meth:`decode`).

        **Long videos and continuations** (:mod:`vqvdm_core.system.long_video`): ``frames`` (a length the
        tokenizer accepts, e.g. 64 from a 16-frame model) generates the latent window by window,
        each window conditioned on the last ``overlap`` latent frames of the one before (default:
        half a window) by the ``known_frames`` method, ``"replacement"`` or ``"reconstruction"``
        (VDM's reconstruction guidance, weight ``reconstruction_weight``). ``context``, a video
        ``(num, 3, K, H, W)`` in [-1, 1], is encoded and continued to ``frames`` (default: the
        trained clip length); its ``K`` frames are kept as given in the output. ``progress(i, n)``
        then counts the levels of every window. A denoiser trained with known frames
        (:attr:`~vqvdm_core.interfaces.Denoiser.known_frames_rate`) also gets them as a clean input,
        and ``known_guidance`` ``w_h`` guides towards them as classifier-free guidance guides towards
        a class (history guidance): ``pred(none) + w_h (pred(known) - pred(none))``, one extra
        batch half per call; 1 turns it off.
        """
        if num < 1:
            raise UserError(f"the number of clips to sample must be at least 1, got {num}")
        device = self.device
        built = self.resolve_sampler(sampler)
        if x_t is not None and tuple(x_t.shape) != (num, *self.latent_shape):
            raise UserError(f"x_t must have the latent shape {(num, *self.latent_shape)}, got {tuple(x_t.shape)}")
        long = frames is not None or context is not None
        if long and (x_t is not None or start_step is not None):
            raise UserError("x_t/start_step (editing a clip) cannot be combined with frames/context")
        plan = self.plan(frames=frames, context=context, overlap=overlap, num=num) if long else None
        if long:
            check_known_frames_settings(known_frames, reconstruction_weight, known_guidance)
        fields, guided_given = self._sampling_fields(num, labels=labels, fps=fps, conditions=conditions,
                                                     device=device)
        was_training = self.training
        self.eval()
        try:
            cond = self.embed(fields, mode="cond")
            uncond = self.embed(fields, mode="uncond") if guided_given else None

            def model_fn(x: Tensor, t: Tensor, known: Tensor | None = None) -> Tensor:
                net = self.denoiser if known is None else _WithKnownFrames(self.denoiser, known, known_guidance)
                if self.guidance is None:
                    return net(x, t, cond)
                return self.guidance.predict(net, x, t, cond=cond, uncond=uncond,  # type: ignore[arg-type]
                                             scale=guidance_scale)

            if plan is None:
                z = run_sampler(built, model_fn, self.schedule, prediction_type=self.denoiser.prediction_type,
                                shape=(num, *self.latent_shape),
                                x=x_t.to(device) if x_t is not None else None, steps=steps,
                                start_step=start_step, generator=generator, device=device,
                                callback=reporting(callback, progress))
            else:
                z = self._sample_windows(plan, built, model_fn, num=num, context=context, steps=steps,
                                         generator=generator, known_frames=known_frames,
                                         reconstruction_weight=reconstruction_weight,
                                         callback=callback, progress=progress)
            z = z / self.latent_scale
            if not decode:
                return z
            video = self.decode(z, batch_size=decode_batch_size)
            if context is not None:
                video[:, :, :context.shape[2]] = context.to(video)  # the given frames, as given
            return video
        finally:
            self.train(was_training)

    def plan(self, *, frames: int | None = None, context: Tensor | None = None, overlap: int | None = None,
             num: int | None = None) -> list[Window]:
        """The latent windows :meth:`sample` runs for ``frames`` (default: the trained length) and a
        ``context`` clip ``(num, 3, K, H, W)``; every argument checked, with one message each."""
        clip_frames, height, width = self.clip_shape
        frames = clip_frames if frames is None else int(frames)
        if frames < 1:
            raise UserError(f"frames must be at least 1, got {frames}")
        total = self._latent_frames(frames, "frames")
        window = self.latent_shape[1]
        context_latent = 0
        if context is not None:
            if context.ndim != 5 or context.shape[1] != 3:
                raise UserError(f"a context must be a video (num, 3, frames, height, width), got "
                                f"{tuple(context.shape)}")
            if num is not None and context.shape[0] != num:
                raise UserError(f"the context has {context.shape[0]} clips but {num} are sampled")
            k, h, w = context.shape[2:]
            if (h, w) != (height, width):
                raise UserError(f"the context's frames are {h}x{w} but the model makes {height}x{width} "
                                "frames; resize or crop the clip first")
            if not torch.isfinite(context).all():
                raise UserError("the context contains non-finite values")
            context_latent = self._latent_frames(k, "the context's frame count")
            if context_latent < 1 or k >= frames:
                raise UserError(f"the context has {k} frames, which leaves nothing to generate up to {frames} "
                                "frames: give fewer context frames or more --frames")
        if overlap is None:
            overlap = max(1, window // 2)
        return plan_windows(total, window=window, overlap=int(overlap), context=context_latent)

    def _latent_frames(self, frames: int, what: str) -> int:
        """Latent frames of ``frames`` video frames; a clear error when the tokenizer cannot take them."""
        _, height, width = self.clip_shape
        try:
            t = self.tokenizer.latent_shape(frames, height, width)[1]
        except UserError:
            t = 0
        reference = self.tokenizer.latent_shape(*self.clip_shape)[1]
        factor = max(1, self.clip_shape[0] // max(1, reference))
        if t < 1 or t * factor != frames:
            raise UserError(f"{what} ({frames}) must be a positive multiple of the tokenizer's temporal factor "
                            f"({factor} frames per latent frame)")
        return int(t)

    def _sample_windows(self, plan: list[Window], sampler: Sampler, model_fn: Callable[[Tensor, Tensor], Tensor],
                        *, num: int, context: Tensor | None, steps: int | None,
                        generator: torch.Generator | None, known_frames: str, reconstruction_weight: float,
                        callback: StepCallback | None,
                        progress: Callable[[int, int], None] | None) -> Tensor:
        """The scaled long latent ``(num, c, total, h, w)``, window by window (see :meth:`sample`)."""
        c, _, h, w = self.latent_shape
        total = plan[-1].end
        z = torch.zeros((num, c, total, h, w), device=self.device)
        if context is not None:
            encoded = self.tokenizer.encode(context.to(self.device).float()).float() * self.latent_scale
            z[:, :, :encoded.shape[2]] = encoded
        levels = len(sampling_chain(sampler, self.schedule, steps))
        done = 0

        def count(i: int, n: int) -> None:
            if progress is not None:
                progress(done + i, levels * len(plan))

        for window in plan:
            known = z[:, :, window.start:window.first_new]
            wrap, window_fn = None, model_fn
            if window.known:
                def wrap(denoise: DenoiseFn, chain: SamplingChain, known: Tensor = known) -> DenoiseFn:
                    return condition_on_known(denoise, chain, known, method=known_frames,
                                              weight=reconstruction_weight, generator=generator)
                if self.denoiser.known_frames_rate > 0:  # it also sees them clean
                    window_fn = functools.partial(model_fn, known=known_input(known, window.length))
            out = run_sampler(sampler, window_fn, self.schedule, prediction_type=self.denoiser.prediction_type,
                              shape=(num, c, window.length, h, w), steps=steps, generator=generator,
                              device=self.device, callback=reporting(callback, count), wrap=wrap)
            z[:, :, window.first_new:window.end] = out[:, :, window.known:]
            done += levels
        return z

    DECODE_CHUNK_VALUES = 2**20
    """Default decode chunk: as many clips as make about this many output values (one 16x128x128
    RGB clip is 786,432; the tokenizer's full-resolution activations are tens of times that)."""

    @torch.no_grad()
    def decode(self, z: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Unscaled latents ``(B, c, t, h, w)`` -> video ``(B, 3, T, H, W)`` clamped to [-1, 1].

        Decodes ``batch_size`` clips at a time (default: :attr:`DECODE_CHUNK_VALUES` output values'
        worth) into one preallocated output, so only one chunk's full-resolution activations are
        ever alive and no list of decoded chunks is concatenated at the end.
        """
        num = z.shape[0]
        if batch_size is None:
            frames, height, width = self.clip_shape
            batch_size = max(1, self.DECODE_CHUNK_VALUES // (3 * frames * height * width))
        window = self.latent_shape[1]
        reach = self.tokenizer.decode_context
        decode_one: Callable[[Tensor], Tensor] = self.tokenizer.decode
        if z.shape[2] > window and reach is not None:
            # A long latent: temporal chunks of one trained clip, widened by the decoder's reach.
            factor = self.clip_shape[0] // window

            def decode_one(part: Tensor) -> Tensor:
                return decode_in_chunks(self.tokenizer.decode, part, chunk=window, reach=reach,
                                        frames_per_latent=factor)
        out: Tensor | None = None
        for start in range(0, num, batch_size):
            part = decode_one(z[start:start + batch_size]).clamp(-1.0, 1.0)
            if out is None:
                if part.shape[0] == num:
                    return part
                out = part.new_empty((num, *part.shape[1:]))
            out[start:start + part.shape[0]] = part
            del part
        assert out is not None
        return out

    def _sampling_fields(self, num: int, *, labels: Any, fps: Any, conditions: Mapping[str, Any] | None = None,
                         device: torch.device) -> tuple[dict[str, Tensor], bool]:
        """Per-conditioner values for sampling, and whether a guided condition was given."""
        given: dict[str, Any] = {k: v for k, v in (conditions or {}).items() if v is not None}
        for key, value in (("label", labels), ("fps", fps)):
            if value is not None:
                if key in given:
                    raise UserError(f"'{key}' was given both as a keyword and in conditions; give it once")
                given[key] = value
        labels = given.get("label")
        read = {cond.field for cond in self.conditioners}
        if labels is not None and "label" not in read:
            if bool((torch.as_tensor(labels) != NO_LABEL).any()):
                raise UserError("labels were given, but this system has no class conditioner "
                                "(it was trained unconditionally); sample without labels")
        unread = sorted(set(given) - read - {"label", "fps"})
        if unread:
            raise UserError(f"conditions were given for {', '.join(map(repr, unread))}, which no conditioner of "
                            f"this system reads (it reads: {_short(sorted(read))})")
        fields: dict[str, Tensor] = {}
        guided_given = False
        for cond in self.conditioners:
            value = given.get(cond.field)
            if value is not None:
                tensor = torch.as_tensor(value, device=device)
                if tensor.ndim == 0:
                    tensor = tensor.expand(num)
                if tensor.shape != (num,):
                    raise UserError(f"'{cond.field}' needs one value per clip ({num}), got shape "
                                    f"{tuple(tensor.shape)}")
                if cond.guided:
                    # Values that are all null (or NO_LABEL) need no unconditional pass.
                    null = cond.null(num, device=device).to(tensor.dtype)
                    guided_given |= bool(((tensor != NO_LABEL) & (tensor != null)).any())
            elif cond.guided:
                tensor = cond.null(num, device=device)
            else:
                tensor = cond.default(num, device=device)
                if tensor is None:
                    raise UserError(
                        f"{type(cond).__name__} needs a value for '{cond.field}' and has no default: "
                        f"pass conditions={{'{cond.field}': [...]}} (one per clip), or give the conditioner a default")
            fields[cond.field] = tensor
        return fields, guided_given


class _WithKnownFrames:
    """The denoiser with known frames bound, called as a plain denoiser (by a guidance, which may
    stack conditional and unconditional halves: the known frames are repeated to match)."""

    def __init__(self, denoiser: Denoiser, known: Tensor, scale: float = 1.0):
        self.denoiser, self.known, self.scale = denoiser, known, scale

    def __call__(self, x: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        repeats = x.shape[0] // self.known.shape[0]
        known = self.known if repeats == 1 else self.known.repeat(repeats, 1, 1, 1, 1)
        if self.scale == 1.0:
            return self.denoiser(x, t, emb, known=known)
        # Guidance on the known frames (history guidance): with and without them, in one batch.
        none = torch.zeros_like(known)
        both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), None if emb is None else torch.cat([emb, emb]),
                             known=torch.cat([known, none]))
        given, free = both.chunk(2)
        return free + self.scale * (given - free)


def known_input(known: Tensor, length: int) -> Tensor:
    """A denoiser's ``known`` input ``(B, c + 1, length, h, w)`` for a clean prefix ``known``
    ``(B, c, k, h, w)``: the prefix, zeros after it, and a mask channel that is 1 on the prefix."""
    b, c, k, h, w = known.shape
    out = known.new_zeros((b, c + 1, length, h, w))
    out[:, :c, :k] = known
    out[:, c, :k] = 1.0
    return out


def known_prefix(z0: Tensor, *, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Training's ``known`` input for clean latents ``z0`` ``(B, c, T, h, w)``: each clip, with
    probability ``rate``, gets a known prefix of ``1 .. T - 1`` frames (uniform); the rest none."""
    lengths = known_lengths(z0.shape[0], z0.shape[2], rate=rate, device=z0.device, generator=generator)
    return known_input_of_lengths(z0, lengths)


def known_lengths(batch_size: int, frames: int, *, rate: float, device: torch.device | str,
                  generator: torch.Generator | None = None) -> Tensor:
    """``(B,)`` known-prefix lengths: with probability ``rate`` uniform in ``1 .. frames - 1``, else 0."""
    chosen = (torch.rand(batch_size, generator=generator, device=device) < rate) & (frames > 1)
    return torch.randint(1, max(2, frames), (batch_size,), generator=generator, device=device) * chosen


def known_input_of_lengths(z0: Tensor, lengths: Tensor) -> Tensor:
    """The ``known`` input ``(B, c + 1, T, h, w)`` that keeps the first ``lengths[i]`` frames of clip ``i``."""
    b, c, frames, h, w = z0.shape
    mask = (torch.arange(frames, device=z0.device)[None, :] < lengths[:, None]).to(z0.dtype)  # (B, T)
    mask = mask[:, None, :, None, None]  # (B, 1, T, 1, 1)
    return torch.cat([z0 * mask, mask.expand(b, 1, frames, h, w)], dim=1)


def _drop_for_global_batch(cond: Conditioner, values: Tensor, generator: torch.Generator | None) -> Tensor:
    """``cond.drop(values)`` drawn for the global batch: the conditioner sees a batch of the global
    size whose rows at this process's place are ``values`` (the others are copies of them, never kept)."""
    b = values.shape[0]

    def drop(n: int) -> Tensor:
        return cond.drop(values.repeat(n // b, *([1] * (values.dim() - 1))), generator=generator)

    return dist.draw_for_global_batch(drop, b)


def _short(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# --------------------------------------------------------------------------------------------
# Building from a recipe
# --------------------------------------------------------------------------------------------


WIRED_FIELDS: dict[str, dict[str, str]] = {
    "denoiser": {"in_channels": "the tokenizer's latent_channels"},
    "conditioner": {"emb_dim": "the denoiser's emb_dim", "num_classes": "the data set's number of classes"},
}
"""Config fields :func:`build_system` fills when a recipe leaves them unset: kind -> field -> source."""


def build_system(recipe: Any, *, num_classes: int, clip_shape: tuple[int, int, int],
                 registry: Registry = REGISTRY, tokenizer: VideoTokenizer | None = None) -> LatentVideoDiffusion:
    """Build every component of ``recipe`` and compose them.

    Wired fields left unset by the recipe are filled: the denoiser's ``in_channels`` from
    ``tokenizer.latent_channels``; each conditioner's ``emb_dim`` from ``denoiser.emb_dim`` and
    ``num_classes`` from the data set. A class conditioner on a data set without classes is refused.
    ``tokenizer``: an already built (e.g. trained and frozen) tokenizer to use instead of building
    the recipe's, which would be thrown away (a VQGAN also builds its loss networks).
    """

    def build(path: str, kind: str, spec: Any, **wired: Any) -> Any:
        try:
            return spec.build(kind, registry, **wired)
        except ValidationError as exc:
            raise ComponentError(f"{path} ({spec.name}): invalid config:\n{exc}") from None

    if tokenizer is None:
        tokenizer = build("tokenizer", "tokenizer", recipe.tokenizer)
    latent_channels = tokenizer.latent_channels
    denoiser = build("denoiser", "denoiser", recipe.denoiser, in_channels=latent_channels)
    wired_in = getattr(getattr(denoiser, "config", None), "in_channels", None)
    if wired_in is not None and wired_in != latent_channels:
        raise UserError(f"denoiser.in_channels is {wired_in} but the tokenizer's latents have "
                        f"{latent_channels} channels; remove in_channels from the recipe to wire it")
    schedule = build("schedule", "schedule", recipe.schedule)

    conditioners = []
    for i, spec in enumerate(recipe.conditioners):
        path = f"conditioners.{i}"
        fields = registry.config_class("conditioner", spec.name).model_fields
        set_classes = spec.options.get("num_classes")
        if "num_classes" in fields and num_classes == 0 and set_classes is None:
            raise UserError(
                f"{path}: the '{spec.name}' conditioner conditions on classes, but the data set has "
                "no classes. Remove it from the recipe (an unlabelled data set such as Sky Time-lapse "
                "trains without class conditioning, the paper's rho = 1).")
        cond = build(path, "conditioner", spec, emb_dim=denoiser.emb_dim, num_classes=num_classes)
        emb_dim = getattr(getattr(cond, "config", None), "emb_dim", None)
        if emb_dim is not None and emb_dim != denoiser.emb_dim:
            raise UserError(f"{path}.emb_dim is {emb_dim} but the denoiser's embeddings have "
                            f"{denoiser.emb_dim} dimensions; remove emb_dim from the recipe to wire it")
        conditioners.append(cond)

    guidance = build("guidance", "guidance", recipe.guidance) if recipe.guidance is not None else None
    scale = getattr(getattr(recipe, "latents", None), "scale", 1.0)
    return LatentVideoDiffusion(
        tokenizer=tokenizer, denoiser=denoiser, schedule=schedule, conditioners=conditioners,
        guidance=guidance, clip_shape=clip_shape,
        latent_scale=scale if isinstance(scale, (int, float)) else 1.0, registry=registry,
    )

"""The evaluation networks: where their weight files come from, how they load, how video is fed.

Two I3D sources give the same Kinetics-400 network (TF-Hub ``i3d-kinetics-400``, the one of the
FVD paper), and one C3D source gives the IS classifier:

=====================  ==============================  ===============================================
file                   format                          who uses it
=====================  ==============================  ===============================================
``i3d_pretrained_400.pt``  state dict for ``InceptionI3d``  VideoGPT, TATS (``i3d_format: state_dict``)
``i3d_torchscript.pt``     TorchScript                     StyleGAN-V, DIGAN-era code (``torchscript``)
``c3d_ucf101.pt``          TorchScript                     StyleGAN-V's port of TGAN2's C3D (IS)
=====================  ==============================  ===============================================

Preprocessing is ours in every case, so the protocol (size, crop, value range, 8-bit rounding) is
the same whichever file supplies the weights: the TorchScript I3D is called with
``rescale=False, resize=False, return_features=True`` on a clip we already resized to 224 and mapped
to [-1, 1] (StyleGAN-V passes 8-bit video with ``rescale=True, resize=True``, which does the same
bilinear resize and linear rescale inside; the two commute). The TorchScript C3D is fed 8-bit video
exactly as StyleGAN-V feeds it (it resizes and normalises inside) and returns class probabilities.

Loading never unpickles Python objects: state dicts use ``torch.load(weights_only=True)`` or
safetensors. A TorchScript file runs TorchScript code from the file (not arbitrary Python): load
only files from the sources named in ``docs/metrics.md``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import MissingFileError, UserError, missing_file_messages
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.io.pixels import unit_range_to_uint8
from vqvdm_core.io.weights import find_weights

from .c3d import C3D
from .i3d import InceptionI3d

__all__ = [
    "WeightFile", "I3D_STATE_DICT", "I3D_TORCHSCRIPT", "C3D_TORCHSCRIPT", "C3D_STATE_DICT",
    "I3DProtocol", "C3DProtocol", "prepare_clips", "load_torchscript", "load_state_dict_file",
    "load_i3d_network", "load_c3d_network", "i3d_weight_file", "c3d_weight_file", "I3DFeatures", "C3DClassifier", "network_fingerprint",
]


@dataclass(frozen=True)
class WeightFile:
    """A community weight file: its usual name, what it is, where people get it, its env variable."""

    filename: str
    description: str
    source: str
    env_var: str

    def find(self, explicit: str | None) -> Path:
        return find_weights(self.filename, explicit=explicit, env_var=self.env_var,
                            description=self.description, source_url=self.source)

    def missing(self, explicit: str | None) -> list[str]:
        """``[]`` if :meth:`find` finds the file, else its message (for ``missing_files``)."""
        return missing_file_messages(lambda: self.find(explicit))


I3D_STATE_DICT = WeightFile(
    filename="i3d_pretrained_400.pt",
    description="I3D (Inception-v1) trained on Kinetics-400, the TF-Hub FVD network converted to a "
                "PyTorch state dict for pytorch-i3d's InceptionI3d (VideoGPT/TATS FVD)",
    source="VideoGPT/TATS: the 'i3d_pretrained_400.pt' link in github.com/wilson1yan/VideoGPT "
           "(videogpt/download.py) and github.com/songweige/TATS (tats/download.py); mirrored by "
           "github.com/JunyaoHu/common_metrics_on_video_quality",
    env_var="VQVDM_I3D_PRETRAINED_400",
)
I3D_TORCHSCRIPT = WeightFile(
    filename="i3d_torchscript.pt",
    description="I3D trained on Kinetics-400 as TorchScript, the TF-Hub FVD network ported by StyleGAN-V",
    source="StyleGAN-V (github.com/universome/stylegan-v, src/metrics/frechet_video_distance.py): "
           "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    env_var="VQVDM_I3D_TORCHSCRIPT",
)
C3D_TORCHSCRIPT = WeightFile(
    filename="c3d_ucf101.pt",
    description="C3D trained on Sports-1M and fine-tuned on UCF-101 as TorchScript (StyleGAN-V's port of "
                "TGAN2's Chainer model), the classifier of the video Inception Score",
    source="StyleGAN-V (github.com/universome/stylegan-v, src/metrics/video_inception_score.py): "
           "https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1",
    env_var="VQVDM_C3D_UCF101",
)
C3D_STATE_DICT = WeightFile(
    filename="c3d_ucf101_state_dict.pt",
    description="C3D (Sports-1M, fine-tuned on UCF-101) as a state dict for vqvdm's C3D module "
                "(TGAN2 layer names conv1a..fc8, optional 'pixel_mean' buffer)",
    source="convert TGAN2's conv3d_deepnetA_ucf.npz (github.com/pfnet-research/tgan2) or StyleGAN-V's "
           "c3d_ucf101.pt yourself; prefer 'c3d_format: torchscript' with c3d_ucf101.pt",
    env_var="VQVDM_C3D_STATE_DICT",
)


# --------------------------------------------------------------------------------------------
# Protocol settings shared by the metrics (nested Configs subclass these)
# --------------------------------------------------------------------------------------------


class I3DProtocol(ComponentConfig):
    """Settings of I3D feature extraction that change FVD/KVD numbers (defaults: the paper's, TATS-style)."""

    i3d_format: Literal["state_dict", "torchscript"] = Field(
        "state_dict", description="state_dict: TATS/VideoGPT's i3d_pretrained_400.pt in our InceptionI3d; "
        "torchscript: StyleGAN-V's i3d_torchscript.pt")
    i3d_weights: str | None = Field(
        None, description="path of the weight file; null: search $VQVDM_I3D_PRETRAINED_400 / "
        "$VQVDM_I3D_TORCHSCRIPT, $VQVDM_WEIGHTS_DIR, ~/.cache/vqvdm/weights")
    i3d_bn_eps: float = Field(1e-5, gt=0, description="batch-norm epsilon of the state-dict I3D "
                              "(VideoGPT/TATS 1e-5; piergiaj/TensorFlow 1e-3)")
    resolution: int = Field(224, ge=8, description="frames are brought to resolution x resolution")
    spatial: Literal["resize", "center_crop"] = Field(
        "resize", description="resize: bilinear resize of the whole frame (TATS/VideoGPT/StyleGAN-V); "
        "center_crop: shorter side to resolution, then a centre crop (keeps aspect ratio)")
    value_range: Literal["symmetric", "unit"] = Field(
        "symmetric", description="pixel range fed to I3D: symmetric [-1, 1] (what the network was trained "
        "on) or unit [0, 1] (a known mistake of some implementations; only to reproduce them)")
    quantize: bool = Field(True, description="round pixels to 8-bit levels first, as saved videos and "
                           "the reference implementations' uint8 inputs are")
    num_frames: int | None = Field(16, ge=1, description="required clip length (the paper: 16); "
                                   "null accepts any length")
    max_real: int = Field(2048, ge=2, description="real clips used (first ones fed); the paper: 2048")
    max_fake: int = Field(2048, ge=2, description="generated clips used; the paper: 2048")
    batch_size: int = Field(8, ge=1, description="clips per I3D forward (memory only, not the number)")
    reference: str | None = Field(
        None, description="identity of the real set (e.g. 'ucf101/train+test/stride1/16f'); with it, "
        "real-set features are computed once and reused (see set_reference)")
    cache_dir: str | None = Field(None, description="folder for cached real-set features; null: keep "
                                  "them in memory only")


class C3DProtocol(ComponentConfig):
    """Settings of C3D classification for the video Inception Score."""

    c3d_format: Literal["torchscript", "state_dict"] = Field(
        "torchscript", description="torchscript: StyleGAN-V's c3d_ucf101.pt (the field's IS network); "
        "state_dict: weights for vqvdm's C3D module")
    c3d_weights: str | None = Field(None, description="path of the weight file; null: search "
                                    "$VQVDM_C3D_UCF101, $VQVDM_WEIGHTS_DIR, ~/.cache/vqvdm/weights")
    quantize: bool = Field(True, description="round pixels to 8-bit levels first (the TorchScript C3D "
                           "takes uint8 video anyway)")
    num_frames: int | None = Field(16, ge=1, description="required clip length (C3D: 16)")
    batch_size: int = Field(8, ge=1, description="clips per C3D forward (memory only)")


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def quantize_8bit(video: Tensor) -> Tensor:
    """Round [-1, 1] video to the 256 levels an 8-bit file would hold (still in [-1, 1])."""
    return torch.round((video.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def prepare_clips(video: Tensor, *, size: int, spatial: str = "resize", quantize: bool = True) -> Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3, T, size, size)`` float32 in [-1, 1].

    ``spatial="resize"``: bilinear resize of the whole frame (aspect ratio not kept, as TATS);
    ``"center_crop"``: bilinear resize of the shorter side to ``size``, then a centre crop.
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"expected video (B, 3, T, H, W), got shape {tuple(video.shape)}")
    b, _, t, h, w = video.shape
    x = video.detach().float().clamp(-1, 1)
    if quantize:
        x = quantize_8bit(x)
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    if spatial == "resize":
        if (h, w) != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    elif spatial == "center_crop":
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        if (new_h, new_w) != (h, w):
            frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        frames = frames[:, :, top:top + size, left:left + size]
    else:
        raise ValueError(f"spatial must be 'resize' or 'center_crop', got {spatial!r}")
    return rearrange(frames, "(b t) c h w -> b c t h w", b=b, t=t)


def check_frames(video: Tensor, num_frames: int | None, metric: str) -> None:
    """Raise a clear error when a clip's length is not the protocol's."""
    if num_frames is not None and video.shape[2] != num_frames:
        raise UserError(
            f"{metric}: clips have {video.shape[2]} frames but the protocol needs {num_frames} "
            f"(num_frames). Generate/load {num_frames}-frame clips, or set num_frames: null "
            "(the number is then not comparable to published ones)")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_torchscript(path: Path, *, what: str) -> torch.jit.ScriptModule:
    """Load a TorchScript file on the CPU in eval mode; a broken file is a clear error."""
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent torch, but it is the format these community files use.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable TorchScript file"
        raise MissingFileError(f"{path} is not a loadable TorchScript file ({what}): {exc}") from exc
    return module.eval()


def load_state_dict_file(path: Path, *, what: str) -> dict[str, Tensor]:
    """Read a state dict (``.safetensors`` or a ``torch.save`` file) without unpickling code.

    Accepts the common wrappers ``{"state_dict": ...}`` / ``{"model": ...}`` and strips a
    ``module.`` prefix (DataParallel checkpoints).
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MissingFileError(f"{path} could not be read as a state dict ({what}): {exc}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MissingFileError(f"{path} does not hold a state dict of tensors ({what})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_strict(module: nn.Module, state: dict[str, Tensor], *, path: Path, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        theirs, ours = set(state), set(module.state_dict())
        missing = sorted(ours - theirs - {k for k in ours if k.endswith("num_batches_tracked")})
        unexpected = sorted(theirs - ours)
        detail = "; ".join(filter(None, [
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}" if unexpected else "",
        ])) or str(exc).splitlines()[0]
        raise UserError(f"{path} does not fit {what}: {detail}") from exc


def i3d_weight_file(protocol: I3DProtocol) -> WeightFile:
    """The weight file ``protocol`` asks for."""
    return I3D_TORCHSCRIPT if protocol.i3d_format == "torchscript" else I3D_STATE_DICT


def c3d_weight_file(protocol: C3DProtocol) -> WeightFile:
    """The weight file ``protocol`` asks for."""
    return C3D_TORCHSCRIPT if protocol.c3d_format == "torchscript" else C3D_STATE_DICT


def load_i3d_network(protocol: I3DProtocol) -> nn.Module:
    """The I3D named by ``protocol`` (TorchScript or state dict), on the CPU, in eval mode."""
    if protocol.i3d_format == "torchscript":
        return load_torchscript(I3D_TORCHSCRIPT.find(protocol.i3d_weights), what=I3D_TORCHSCRIPT.description)
    path = I3D_STATE_DICT.find(protocol.i3d_weights)
    network = InceptionI3d(num_classes=400, bn_eps=protocol.i3d_bn_eps)
    _load_strict(network, load_state_dict_file(path, what=I3D_STATE_DICT.description), path=path,
                 what="InceptionI3d (400 Kinetics classes)")
    return network.eval()


def load_c3d_network(protocol: C3DProtocol) -> nn.Module:
    """The C3D named by ``protocol`` (TorchScript or state dict), on the CPU, in eval mode."""
    if protocol.c3d_format == "torchscript":
        return load_torchscript(C3D_TORCHSCRIPT.find(protocol.c3d_weights), what=C3D_TORCHSCRIPT.description)
    path = C3D_STATE_DICT.find(protocol.c3d_weights)
    state = load_state_dict_file(path, what=C3D_STATE_DICT.description)
    num_classes = state["fc8.weight"].shape[0] if "fc8.weight" in state else 101
    network = C3D(num_classes=num_classes)
    _load_strict(network, state, path=path, what="C3D (conv1a..fc8)")
    return network.eval()


def network_fingerprint(network: nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers (names, shapes, values): its weights' identity."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _device_of(network: nn.Module) -> torch.device:
    for tensor in network.parameters():
        return tensor.device
    for tensor in network.buffers():
        return tensor.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Feature extractors: video in [-1, 1] -> features / probabilities
# --------------------------------------------------------------------------------------------


class _ProtocolNetwork(nn.Module):
    """A frozen network (in eval mode) with the protocol that prepares its input; ``calls`` counts
    its forwards (lets callers and tests see cache hits). ``torchscript``: the network is the
    reference's TorchScript port, called its way."""

    def __init__(self, network: nn.Module, *, torchscript: bool, protocol: Any):
        super().__init__()
        self.network = network.eval()
        self.torchscript = torchscript
        self.protocol = protocol
        self.calls = 0

    def chunks(self, video: Tensor) -> Iterator[Tensor]:
        """``video`` in batches of ``protocol.batch_size`` clips, on the network's device; each
        batch yielded counts as one call."""
        device = _device_of(self.network)
        for chunk in video.split(self.protocol.batch_size):
            self.calls += 1
            yield chunk.to(device)


class I3DFeatures(_ProtocolNetwork):
    """I3D features (400 logits) of ``(B, 3, T, H, W)`` video in [-1, 1], preprocessed by ``protocol``.

    ``network`` is a TorchScript module with StyleGAN-V's call signature
    ``(x, rescale=..., resize=..., return_features=...)`` when ``torchscript`` is True, else any
    module mapping prepared clips ``(B, 3, T, R, R)`` to ``(B, D)`` (our :class:`InceptionI3d`).
    """

    protocol: I3DProtocol

    @torch.no_grad()
    def forward(self, video: Tensor) -> Tensor:
        p = self.protocol
        out = []
        for chunk in self.chunks(video):
            x = prepare_clips(chunk, size=p.resolution, spatial=p.spatial, quantize=p.quantize)
            if p.value_range == "unit":
                x = (x + 1) / 2
            if self.torchscript:
                feats = self.network(x, rescale=False, resize=False, return_features=True)
            else:
                feats = self.network(x)
            out.append(feats.reshape(feats.shape[0], -1).float())
        return torch.cat(out)


class C3DClassifier(_ProtocolNetwork):
    """UCF-101 class probabilities ``(B, K)`` of ``(B, 3, 16, H, W)`` video in [-1, 1].

    TorchScript (StyleGAN-V's ``c3d_ucf101.pt``): fed uint8 video at its own size, returns
    probabilities. State dict (:class:`C3D`): frames resized to 112x112 (bilinear), RGB -> BGR,
    0..255 minus ``pixel_mean``, softmax of the logits (TGAN2's preprocessing).
    """

    protocol: C3DProtocol

    @torch.no_grad()
    def forward(self, video: Tensor) -> Tensor:
        out = []
        for chunk in self.chunks(video):
            x = chunk.detach().float().clamp(-1, 1)
            if self.protocol.quantize:
                x = quantize_8bit(x)
            if self.torchscript:
                probs = self.network(unit_range_to_uint8(x))  # 0..255 uint8
            else:
                x = prepare_clips(x, size=112, spatial="resize", quantize=False)
                bgr = ((x + 1) * 127.5).flip(1)  # RGB -> BGR, 0..255
                probs = self.network(bgr - self.network.pixel_mean).softmax(dim=1)
            out.append(probs.double())
        return torch.cat(out)

"""The typed interfaces every component implements.

Conventions used throughout:

* Video tensors are ``(B, C, T, H, W)`` float tensors with pixel values in ``[-1, 1]``.
* Latents are ``(B, c, t, h, w)``; for the paper's 3D VQGAN a ``3x16x128x128`` clip becomes ``4x4x16x16``.
* Embeddings are ``(B, D)`` where ``D`` is the denoiser's ``emb_dim``.
* A batch is a mapping with at least ``"video"`` (B, C, T, H, W), ``"fps"`` (B,) float and
  ``"label"`` (B,) long, where ``-1`` means "no label", plus any other ``(B,)`` field a
  conditioner reads (``"motion"``...): conditions are a mapping of field to values.

Each interface is an abstract class; a plug-in subclasses it and adds a nested ``Config``
(see :mod:`vqvdm_core.interfaces.configurable`). The registry refuses a class that does not subclass its kind's
interface or leaves an abstract method unimplemented.

One concept per module, every name re-exported here (import from here):
:mod:`~vqvdm_core.interfaces.configurable` (``ComponentConfig``, ``Configurable``),
:mod:`~vqvdm_core.interfaces.training` (``Trainable``, ``TrainStep``),
:mod:`~vqvdm_core.interfaces.tokenizer`, :mod:`~vqvdm_core.interfaces.denoiser`,
:mod:`~vqvdm_core.interfaces.schedule`, :mod:`~vqvdm_core.interfaces.sampler` (the ``Sampler``
contract, the chains it runs over and :func:`~vqvdm_core.interfaces.sampler.run_sampler`),
:mod:`~vqvdm_core.interfaces.conditioner`, :mod:`~vqvdm_core.interfaces.guidance`,
:mod:`~vqvdm_core.interfaces.metric`, :mod:`~vqvdm_core.interfaces.dataset`,
:mod:`~vqvdm_core.interfaces.logger` and :mod:`~vqvdm_core.interfaces.quantizer` (what a
tokenizer's encoder output becomes: ``Quantizer``, ``Quantized``).
"""

from __future__ import annotations

from vqvdm_core.interfaces.conditioner import Conditioner
from vqvdm_core.interfaces.configurable import ComponentConfig, Configurable, FilePurpose
from vqvdm_core.interfaces.dataset import NO_LABEL, VideoDataset
from vqvdm_core.interfaces.denoiser import Denoiser, ModelFn, PredictionType
from vqvdm_core.interfaces.guidance import Guidance
from vqvdm_core.interfaces.logger import ExperimentLogger, RunInfo
from vqvdm_core.interfaces.metric import Metric, accepts_conditions, update_metric
from vqvdm_core.interfaces.quantizer import Quantized, Quantizer
from vqvdm_core.interfaces.sampler import DenoiseFn, Sampler, SamplingChain, StepCallback, respace
from vqvdm_core.interfaces.schedule import NoiseSchedule
from vqvdm_core.interfaces.tokenizer import VideoTokenizer
from vqvdm_core.interfaces.training import Trainable, TrainStep, iter_parameters

__all__ = [
    "NO_LABEL",
    "PredictionType",
    "TrainStep",
    "Trainable",
    "VideoTokenizer",
    "Denoiser",
    "NoiseSchedule",
    "Conditioner",
    "Guidance",
    "Metric",
    "Sampler",
    "VideoDataset",
    "ExperimentLogger",
    "RunInfo",
    "Quantizer",
    "Quantized",
    "accepts_conditions",
    "update_metric",
    "ModelFn",
    "INTERFACES",
    "iter_parameters",
    "ComponentConfig",
    "Configurable",
    "FilePurpose",
    "DenoiseFn",
    "SamplingChain",
    "StepCallback",
    "respace",
]

INTERFACES: dict[str, type] = {
    "tokenizer": VideoTokenizer,
    "denoiser": Denoiser,
    "schedule": NoiseSchedule,
    "sampler": Sampler,
    "conditioner": Conditioner,
    "guidance": Guidance,
    "metric": Metric,
    "dataset": VideoDataset,
    "logger": ExperimentLogger,
    "quantizer": Quantizer,
}
"""Kind name -> the interface its components must implement."""

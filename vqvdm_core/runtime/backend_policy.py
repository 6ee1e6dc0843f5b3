"""What a run sets in torch for its GPU: TF32, cuDNN's autotuner and deterministic algorithms.

A recipe's ``runtime`` section names them (:func:`backend_policy` applies it while a run works):

* ``tf32`` (default on): fp32 matmuls and convolutions on CUDA run on the TF32 tensor cores of
  Ampere and later GPUs (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``;
  10-bit mantissa products, fp32 accumulation). PyTorch's own default is TF32 for convolutions
  only; diffusion training scripts (diffusers' ``--allow_tf32``) turn it on for matmuls too. The
  CPU is unaffected: its fp32 stays IEEE.
* ``cudnn_benchmark`` (default on): cuDNN times its convolution algorithms for each new input shape
  and keeps the fastest; a training run's shapes repeat, so the search is paid once per shape.
* ``deterministic`` (default off): only deterministic kernels (``torch.use_deterministic_algorithms``;
  an operation without one raises, naming itself), cuDNN's autotuner off and cuBLAS's fixed workspace
  (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set before the first cuBLAS call). What "bit for bit on 1 or
  N processes" (``train.<stage>.shards``) needs on a GPU; CUDA's atomic-add kernels (``index_add_``,
  some convolution weight gradients) otherwise add in a different order every run.

The flags are process-wide; :func:`backend_policy` restores the previous values when the run ends,
so a notebook that runs a recipe keeps its own settings afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["backend_policy", "current_policy"]

CUBLAS_WORKSPACE = ":4096:8"


def current_policy() -> dict[str, Any]:
    """The flags as they are now (written to a run's ``environment.json``)."""
    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


@contextlib.contextmanager
def backend_policy(*, tf32: bool = True, cudnn_benchmark: bool = True, deterministic: bool = False) -> Iterator[None]:
    """Run the block with these flags (see the module's text), then restore the previous ones."""
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
                torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
    torch.backends.cudnn.deterministic = deterministic or previous[3]
    if deterministic:
        if workspace is None:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.deterministic) = previous[:4]
        torch.use_deterministic_algorithms(previous[4], warn_only=previous[5])
        if deterministic and workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

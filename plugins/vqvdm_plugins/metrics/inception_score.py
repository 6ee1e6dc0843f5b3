"""Video Inception Score (Salimans et al. 2016) with the UCF-101 C3D (Saito et al., TGAN).

``IS = exp( E_x KL( p(y|x) || p(y) ) )``, computed on each of ``num_splits`` equal parts of the
generated set and reported as mean and standard deviation over the parts (StyleGAN-V's
``compute_isv``: probabilities shuffled with a fixed seed, then split). It lies in
``[1, num_classes]``: 1 when every clip gets the same prediction, ``num_classes`` when each clip is
confidently one class and all classes are equally frequent.

Protocol of the paper (Sec. 3.1, the default): C3D trained on Sports-1M and fine-tuned on UCF-101
(StyleGAN-V's ``c3d_ucf101.pt``), 10,000 generated 16-frame clips.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import Metric
from vqvdm_core.interfaces.configurable import FilePurpose

from .feature_networks import C3DClassifier, C3DProtocol, c3d_weight_file
from .feature_networks import check_frames, load_c3d_network

__all__ = ["InceptionScore", "inception_score"]


def inception_score(probs: Tensor, *, num_splits: int = 1, shuffle_seed: int | None = None,
                    eps: float = 0.0) -> tuple[float, float]:
    """Mean and std of the Inception Score of ``(N, K)`` class probabilities over ``num_splits`` parts.

    Part ``i`` holds rows ``i*N//s .. (i+1)*N//s`` (after a shuffle with ``shuffle_seed`` if given).
    Zero probabilities contribute zero (``0 log 0 = 0``); ``eps`` is added inside the logs only if set.
    """
    p = probs.detach().to(torch.float64).cpu()
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {tuple(p.shape)}")
    n = p.shape[0]
    if num_splits < 1 or n < num_splits:
        raise ValueError(f"need at least num_splits={num_splits} samples, got {n}")
    if shuffle_seed is not None:
        order = np.random.RandomState(shuffle_seed).permutation(n)
        p = p[torch.from_numpy(order)]
    scores = []
    for i in range(num_splits):
        part = p[i * n // num_splits:(i + 1) * n // num_splits]
        marginal = part.mean(dim=0, keepdim=True)
        # KL(p(y|x) || p(y)) per row; xlogy makes 0 * log 0 = 0.
        kl = torch.special.xlogy(part, part + eps) - torch.special.xlogy(part, marginal + eps)
        scores.append(float(torch.exp(kl.sum(dim=1).mean())))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False))


class InceptionScore(Metric):
    """Video Inception Score with the UCF-101 C3D classifier (mean and std over splits)."""

    requires_real: ClassVar[bool] = False

    class Config(C3DProtocol):
        num_splits: int = Field(10, ge=1, description="parts the generated set is split into (mean/std over them)")
        max_samples: int = Field(10000, ge=1, description="generated clips used (first ones fed); the paper: 10,000")
        shuffle_seed: int | None = Field(42, description="shuffle of the probabilities before splitting "
                                         "(StyleGAN-V: 42); null: split in the order fed")

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The C3D weight file, if it cannot be found."""
        return c3d_weight_file(config).missing(config.c3d_weights)

    def __init__(self, config: "InceptionScore.Config | None" = None, *, network: nn.Module | None = None,
                 torchscript: bool = False, **overrides: Any):
        self.config = cfg = self.resolve_config(config, overrides)
        if network is None:
            network = load_c3d_network(cfg)
            torchscript = cfg.c3d_format == "torchscript"
            self._weights = c3d_weight_file(cfg).filename
        else:
            self._weights = f"custom network ({type(network).__name__})"
        self.classifier = C3DClassifier(network, torchscript=torchscript, protocol=cfg)
        self._probs: list[Tensor] = []
        self._count = 0

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        if fake is None:
            return
        check_frames(fake, self.config.num_frames, "is")
        take = fake[: max(0, self.config.max_samples - self._count)]
        if not len(take):
            return
        probs = self.classifier(take).cpu()
        if (probs < -1e-6).any() or not torch.allclose(probs.sum(dim=1), torch.ones(len(probs), dtype=probs.dtype),
                                                       atol=1e-3):
            raise UserError(f"the IS classifier ({self._weights}) did not return class probabilities "
                            "(rows must be >= 0 and sum to 1); is it a logits network?")
        self._probs.append(probs.clamp_min(0))
        self._count += len(take)

    def compute(self) -> dict[str, float]:
        if self._count < self.config.num_splits:
            raise ValueError(f"is needs at least num_splits={self.config.num_splits} generated clips, "
                             f"got {self._count}")
        mean, std = inception_score(torch.cat(self._probs), num_splits=self.config.num_splits,
                                    shuffle_seed=self.config.shuffle_seed)
        return {"is": mean, "is_std": std, "num_samples": float(self._count)}

    def reset(self) -> None:
        self._probs, self._count = [], 0

    def to(self, device: torch.device | str) -> "InceptionScore":
        self.classifier.network.to(device)
        return self

    def protocol(self) -> dict[str, Any]:
        c = self.config
        fields = c.model_dump(exclude={"batch_size", "c3d_weights"})
        fields.update(
            weights=self._weights,
            classifier="C3D (Sports-1M, fine-tuned on UCF-101), 101-class softmax",
            num_samples=self._count,
            paper_comparable=bool(self._weights.endswith(".pt") and c.num_frames == 16
                                  and self._count >= 10000),
        )
        return fields

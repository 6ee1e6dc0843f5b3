"""One optimizer (and one learning-rate schedule) per optimizer group of a trainable model.

The model names its groups (``optimizer_groups()``: ``{"generator": [...], "discriminator": [...]}``);
the recipe's ``train.<stage>.optimizer`` applies to every group and ``param_groups.<group>``
overrides fields for one group. Warm-up is linear: during optimizer step ``s`` (0-based) the
learning rate is ``lr * min(1, (s + 1) / warmup_steps)``. With ``decay: cosine`` (or ``linear``) it
then follows a half cosine (a straight line) from ``lr`` to ``min_lr_ratio * lr`` at the stage's last
step; with ``decay_steps`` the decay covers only the last ``decay_steps`` steps and the rate stays at
``lr`` until then (warm-up, stable, decay). Steps are counted per group, once per optimizer step of
the stage, also while a group has nothing to step (a GAN discriminator before its switch-on).
"""

from __future__ import annotations

import math

from torch import nn
from torch.optim import Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from vqvdm_core.errors import UserError
from vqvdm_core.recipe import OptimizerSettings, TrainSettings

__all__ = ["OptimizerGroupError", "build_lr_schedule", "build_optimizer", "trained_groups"]


class OptimizerGroupError(UserError):
    """The model's optimizer groups and the recipe's ``param_groups`` do not fit together."""


def trained_groups(groups: dict[str, list[nn.Parameter]], settings: TrainSettings,
                   *, model_name: str) -> dict[str, list[nn.Parameter]]:
    """Check the model's groups against the recipe; keep only parameters that require grad.

    Raises :class:`OptimizerGroupError` for an empty group, a parameter in two groups, or a
    ``param_groups`` entry naming a group the model does not have.
    """
    if not groups:
        raise OptimizerGroupError(f"{model_name}.optimizer_groups() returned no groups: nothing to train")
    unknown = sorted(set(settings.param_groups) - set(groups))
    if unknown:
        raise OptimizerGroupError(
            f"param_groups names {', '.join(repr(u) for u in unknown)} but {model_name} has the "
            f"optimizer groups {', '.join(repr(g) for g in groups)}"
        )
    owner: dict[int, str] = {}
    out: dict[str, list[nn.Parameter]] = {}
    for name, params in groups.items():
        kept = []
        for p in params:
            if not p.requires_grad:
                continue
            if id(p) in owner:
                if owner[id(p)] == name:
                    continue
                raise OptimizerGroupError(f"{model_name}: a parameter is in both optimizer groups "
                                          f"'{owner[id(p)]}' and '{name}'; each must be in one group")
            owner[id(p)] = name
            kept.append(p)
        if not kept:
            raise OptimizerGroupError(f"{model_name}: optimizer group '{name}' has no parameters "
                                      "that require gradients")
        out[name] = kept
    return out


def build_optimizer(params: list[nn.Parameter], settings: OptimizerSettings) -> Optimizer:
    """An Adam or AdamW optimizer over ``params`` with the recipe's hyper-parameters."""
    cls = {"adamw": AdamW, "adam": Adam}[settings.name]
    # On CUDA the fused kernel: one launch for every parameter, and the fp16 gradient scaler hands it
    # its inf check on the device instead of reading it on the host. The CPU keeps PyTorch's default
    # (its arithmetic, and so every CPU run's weights, stay what they were).
    fused = {"fused": True} if params and all(p.device.type == "cuda" and p.is_floating_point() for p in params) else {}
    return cls(params, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
               weight_decay=settings.weight_decay, **fused)


class LearningRateFactor:
    """The factor on ``lr`` during optimizer step ``s`` (0-based): linear warm-up, then constant or
    a half-cosine / linear decay to ``min_ratio`` at step ``total_steps - 1``, over the last
    ``decay_steps`` steps (all steps after warm-up when None).

    A class (not a lambda) so the scheduler's state dict stays plain data.
    """

    def __init__(self, warmup_steps: int, *, total_steps: int = 0, decay: str = "constant",
                 min_ratio: float = 0.0, decay_steps: int | None = None):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = decay
        self.min_ratio = float(min_ratio)
        self.decay_steps = None if decay_steps is None else int(decay_steps)

    def __call__(self, step: int) -> float:
        warmup = 1.0 if self.warmup_steps <= 0 else min(1.0, (step + 1) / self.warmup_steps)
        last = self.total_steps - 1
        start = self.warmup_steps if self.decay_steps is None else max(self.warmup_steps, last - self.decay_steps)
        if self.decay == "constant" or last <= start:
            return warmup
        progress = min(1.0, max(0.0, (step - start) / (last - start)))
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.decay == "cosine" else 1.0 - progress
        return warmup * (self.min_ratio + (1.0 - self.min_ratio) * shape)


def build_lr_schedule(optimizer: Optimizer, settings: OptimizerSettings, *, total_steps: int) -> LambdaLR:
    """The learning-rate schedule of ``optimizer`` over a stage of ``total_steps`` optimizer steps;
    call ``.step()`` after each optimizer step."""
    return LambdaLR(optimizer, LearningRateFactor(settings.warmup_steps, total_steps=total_steps,
                                                  decay=settings.decay, min_ratio=settings.min_lr_ratio,
                                                  decay_steps=settings.decay_steps))

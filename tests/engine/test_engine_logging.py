"""What a run records: metrics.jsonl, loss_curves.png, progress lines, validation calls."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from engine_toys import ToyGAN, ToyPairs, make_gan, make_trainer, settings
from PIL import Image
from rich.console import Console

from vqvdm_core.engine.logging import format_duration


def test_metrics_jsonl_and_loss_curves_are_written(tmp_path):
    def validate(model, step):
        return {"val/score": float(step) * 0.5}

    s = settings(steps=5, log_every=2, val_every=2, ema_decay=0.9, grad_clip=1.0)
    result = make_trainer(make_gan(), s, tmp_path, validate=validate).fit(ToyPairs(8))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == result.history

    train = [r for r in records if r["tag"] == "train"]
    val = [r for r in records if r["tag"] == "val"]
    assert [r["step"] for r in train] == [2, 4, 5]
    for r in train:
        for key in ("time", "epoch", "it_per_s", "lr/generator", "lr/discriminator", "loss/generator",
                    "loss/discriminator", "g_adv", "d_total", "grad_norm/generator", "grad_norm/discriminator"):
            assert key in r, key
        # the logged adversarial term is the generator's loss itself in this toy
        assert abs(r["g_adv"] - r["loss/generator"]) < 1e-6
    assert [(r["step"], r["val/score"]) for r in val] == [(2, 1.0), (4, 2.0), (5, 2.5)]
    assert result.final["step"] == 5 and result.final["val/score"] == 2.5
    assert result.final["loss/generator"] == train[-1]["loss/generator"]

    with Image.open(tmp_path / "loss_curves.png") as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_plain_log_lines_when_not_a_terminal(tmp_path):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    make_trainer(make_gan(), settings(steps=4, log_every=2), tmp_path, console=console,
                 description="tokenizer").fit(ToyPairs(8))
    lines = buffer.getvalue().strip().splitlines()
    pattern = (r"tokenizer step (\d+)/4 loss generator [\d.e+-]+ discriminator [\d.e+-]+ "
               r"[\d.]+ it/s eta \S+")
    steps = [int(m.group(1)) for line in lines if (m := re.fullmatch(pattern, line))]
    assert steps == [2, 4], lines


def test_rich_progress_bar_on_a_terminal(tmp_path):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    make_trainer(make_gan(), settings(steps=4, log_every=2), tmp_path, console=console,
                 description="denoiser").fit(ToyPairs(8))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert "denoiser" in text and "4/4" in text and "it/s" in text
    assert "step 2/4" not in text  # no plain lines on a terminal


def test_validation_sees_ema_weights_in_eval_mode_without_grad(tmp_path):
    seen = []

    def validate(model, step):
        seen.append((step, model.training, torch.is_grad_enabled(),
                     {k: v.detach().clone() for k, v in model.named_parameters()}))
        torch.rand(100)  # validation's random draws must not change training
        return {}

    s = settings(steps=5, val_every=2, ema_decay=0.7)
    model = make_gan(noise=True)
    trainer = make_trainer(model, s, tmp_path / "a", validate=validate)
    trainer.fit(ToyPairs(8))
    assert [step for step, *_ in seen] == [2, 4, 5]
    assert all(not training and not grad for _, training, grad, _ in seen)
    assert model.training  # train mode restored
    ema = dict(trainer.ema_model().named_parameters())
    final = seen[-1][3]
    for name, value in final.items():
        assert torch.equal(value, ema[name].detach())
        assert not torch.equal(value, dict(model.named_parameters())[name].detach())

    plain = make_gan(noise=True)
    make_trainer(plain, s, tmp_path / "b").fit(ToyPairs(8))
    for name, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


class _ModeTiedGAN(ToyGAN):
    """A toy whose ``train()`` switches state with the mode, as the U-Net's channels-last weights."""

    def __init__(self):
        torch.manual_seed(0)
        super().__init__(noise=True)
        self.eval_layout = False
        self.layouts_trained_on: list[bool] = []

    def train(self, mode: bool = True):
        super().train(mode)
        self.eval_layout = not mode
        return self

    def training_step(self, batch, *, step):
        self.layouts_trained_on.append(self.eval_layout)
        return super().training_step(batch, step=step)


def test_training_after_validation_goes_on_in_the_state_train_mode_sets(tmp_path):
    # Validation switches to eval mode and back through train(): a module that ties state to its
    # mode (the U-Net's weight layout) must find it undone, or rank 0 alone trains on differently.
    s = settings(steps=5, val_every=2)
    model = _ModeTiedGAN()
    seen = []
    make_trainer(model, s, tmp_path, validate=lambda m, step: seen.append(m.eval_layout) or {}).fit(ToyPairs(8))
    assert seen == [True, True, True]  # validation ran in the eval state
    assert model.layouts_trained_on == [False] * 5 and not model.eval_layout and model.training


def test_durations_read_naturally():
    assert [format_duration(s) for s in (5, 65, 425, 3900)] == ["5s", "1m05s", "7m05s", "1h05m"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_validation_runs_in_the_stage_precision(tmp_path, precision):
    seen = []
    s = settings(steps=2, val_every=2, precision=precision)
    make_trainer(make_gan(), s, tmp_path,
                 validate=lambda m, step: seen.append(torch.is_autocast_enabled("cpu")) or {}).fit(ToyPairs(8))
    assert seen == [precision == "bf16"]

"""Inception Score: its known limits, and the metric around a (TorchScript) C3D classifier."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from vqvdm_core.errors import UserError
from vqvdm_plugins.metrics.inception_score import InceptionScore, inception_score

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated upstream


def test_uniform_predictions_score_one():
    probs = torch.full((40, 7), 1 / 7)
    mean, std = inception_score(probs, num_splits=4)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_balanced_predictions_score_num_classes():
    probs = torch.eye(5).repeat(6, 1)  # 30 one-hot rows, every class 6 times
    assert inception_score(probs, num_splits=1)[0] == pytest.approx(5.0)
    # Each of 3 ordered splits of 10 rows still holds every class twice.
    mean, std = inception_score(probs, num_splits=3)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-12)


def test_split_scores_follow_the_kl_definition():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(20, 4, generator=g).softmax(dim=1).double()
    mean, std = inception_score(probs, num_splits=2)
    scores = []
    for part in (probs[:10], probs[10:]):
        marginal = part.mean(0)
        kl = (part * (part.log() - marginal.log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    assert mean == pytest.approx(sum(scores) / 2)
    assert std == pytest.approx(abs(scores[0] - scores[1]) / 2)


class PixelClassifier(nn.Module):
    """TorchScript-able stand-in of StyleGAN-V's C3D: uint8 video -> softmax over 3 classes."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        mean_colour = x.float().mean(dim=(2, 3, 4)) / 255.0  # (B, 3)
        return (self.head(mean_colour) * 20).softmax(dim=1)


def test_inception_score_metric_runs_a_scripted_classifier_on_uint8_video(tmp_path):
    torch.manual_seed(0)
    classifier = PixelClassifier()
    path = tmp_path / "c3d_ucf101.pt"
    torch.jit.script(classifier).save(str(path))
    metric = InceptionScore(c3d_weights=str(path), num_frames=4, num_splits=2, max_samples=6)
    assert metric.classifier.torchscript
    video = torch.rand(8, 3, 4, 6, 6) * 2 - 1
    metric.update(fake=video[:5])
    metric.update(fake=video[5:])  # only one more clip fits max_samples=6
    out = metric.compute()
    expected_probs = classifier(((video[:6] + 1) * 127.5).round().to(torch.uint8)).double()
    assert out["num_samples"] == 6
    assert out["is"] == pytest.approx(inception_score(expected_probs, num_splits=2, shuffle_seed=42)[0], rel=1e-5)
    assert metric.protocol()["paper_comparable"] is False


def test_inception_score_refuses_a_network_that_returns_logits():
    class Logits(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.float().mean(dim=(2, 3, 4)) - 100.0

    metric = InceptionScore(network=Logits(), torchscript=True, num_frames=None)
    with pytest.raises(UserError, match="class probabilities"):
        metric.update(fake=torch.zeros(2, 3, 2, 4, 4))

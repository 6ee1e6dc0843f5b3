"""Stand-in data sets in the real on-disk layouts, and random-weight metric networks, per session.

The trees are tiny (a few 20-frame videos of 24x32) but laid out exactly as the real downloads:

- UCF-101: ``<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` (xvid-like MPEG-4 AVI, 25 FPS) and
  ``<root>/ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt`` with Windows line ends;
- Sky Time-lapse: ``<root>/sky_train/<video>/<clip>/<video>_<n>_frames_XXXXXXXX.jpg`` and ``sky_test``.

The videos come from the generators the data tests use (``tests/data/video_factory.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # tests/data/video_factory.py
from video_factory import make_frames, make_video  # noqa: E402

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark():
    """``load_benchmark("motion_learning")``: a script of ``benchmarks/`` imported as a module (its
    folder is on ``sys.path`` only while it is imported, for its ``_common`` import)."""
    import importlib

    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(BENCHMARKS))

    return load


UCF_CLASSES = ["PlayingCello", "Archery", "Surfing"]  # classInd order, not alphabetical
"""Classes of the stand-in UCF-101; group g01 is the test list, g08-g09 the train list."""
UCF_TRAIN_GROUPS = (8, 9)
UCF_TEST_GROUPS = (1,)


@pytest.fixture(scope="session")
def ucf101_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature UCF-101 (3 classes; 2 train and 1 test video each) in the official layout."""
    root = tmp_path_factory.mktemp("ucf101")
    crlf = "\r\n"  # the official split files use Windows line ends
    train_lines, test_lines = [], []
    for label, name in enumerate(UCF_CLASSES, start=1):
        for group in UCF_TRAIN_GROUPS + UCF_TEST_GROUPS:
            rel = f"{name}/v_{name}_g{group:02d}_c01.avi"
            make_video(root / "UCF-101" / rel, 20, 25.0, codec="mpeg4")
            if group in UCF_TRAIN_GROUPS:
                train_lines.append(f"{rel} {label}")
            else:
                test_lines.append(rel)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text(
        crlf.join(f"{i} {n}" for i, n in enumerate(UCF_CLASSES, start=1)) + crlf)
    (lists / "trainlist01.txt").write_text(crlf.join(train_lines) + crlf)
    (lists / "testlist01.txt").write_text(crlf.join(test_lines) + crlf)
    return root


@pytest.fixture(scope="session")
def sky_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature Sky Time-lapse: 3 training clips (one too short, as in the real set) and 2 test clips."""
    root = tmp_path_factory.mktemp("sky_timelapse")
    clips = {
        "sky_train": [("vidA", 1, 20), ("vidA", 2, 18), ("vidB", 1, 20), ("vidB", 2, 9)],
        "sky_test": [("vidC", 1, 18), ("vidD", 1, 20)],
    }
    for split, items in clips.items():
        for video, n, frames in items:
            make_frames(root / split / video / f"{video}_{n}", frames,
                        pattern=f"{video}_{n}_frames_{{i:08d}}.jpg")
    return root


# --------------------------------------------------------------------------------------------
# Metric networks with random weights, in the file formats the recipes' metrics load
# --------------------------------------------------------------------------------------------


def variance_preserving(network: nn.Module) -> None:
    """Re-draw random weights so activations keep their scale through depth (He init, non-trivial
    batch-norm statistics). PyTorch's default init shrinks them layer by layer: a deep random
    I3D would give every clip nearly the same features, and FVD would be ~0 whatever it is fed."""
    g = torch.Generator().manual_seed(0)
    for m in network.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="session")
def i3d_state_dict_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ``i3d_pretrained_400.pt``: the full InceptionI3d state dict (TATS layout)."""
    from vqvdm_plugins.metrics.i3d import InceptionI3d

    torch.manual_seed(0)
    network = InceptionI3d()
    variance_preserving(network)
    path = tmp_path_factory.mktemp("weights") / "i3d_pretrained_400.pt"
    # Without num_batches_tracked, as TATS's converted file is.
    torch.save({k: v for k, v in network.state_dict().items() if "num_batches_tracked" not in k}, path)
    return path


class ScriptedC3D(nn.Module):
    """A tiny C3D with the call convention of StyleGAN-V's ``c3d_ucf101.pt``.

    uint8 ``(B, 3, 16, H, W)`` in, UCF-101 class probabilities ``(B, 101)`` out; it resizes to
    112x112 and subtracts the BGR mean inside, as the TorchScript port does.
    """

    def __init__(self) -> None:
        super().__init__()
        from vqvdm_plugins.metrics.c3d import C3D

        self.c3d = C3D(widths=(2, 3, 4, 4, 4), fc_dim=8, num_classes=101)
        variance_preserving(self.c3d)

    def forward(self, video: Tensor) -> Tensor:
        b, c, t, h, w = video.shape
        frames = video.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # (B*T, 3, H, W)
        frames = nn.functional.interpolate(frames, size=(112, 112), mode="bilinear", align_corners=False)
        x = frames.reshape(b, t, c, 112, 112).permute(0, 2, 1, 3, 4).flip(1)  # (B, 3, T, 112, 112) BGR
        return self.c3d(x - self.c3d.pixel_mean).softmax(dim=1)


@pytest.fixture(scope="session")
def c3d_torchscript_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight stand-in for ``c3d_ucf101.pt`` (TorchScript, the recipes' default format)."""
    import warnings

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "c3d_ucf101.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        torch.jit.script(ScriptedC3D().eval()).save(str(path))
    return path

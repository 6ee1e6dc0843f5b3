"""Loading the evaluation networks (state dicts, TorchScript) and the shared preprocessing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from vqvdm_core.errors import MissingFileError, UserError
from vqvdm_plugins.metrics.c3d import C3D
from vqvdm_plugins.metrics.feature_networks import (
    C3DClassifier, C3DProtocol, I3DFeatures, I3DProtocol, load_c3d_network, load_i3d_network, prepare_clips,
)
from vqvdm_plugins.metrics.i3d import InceptionI3d

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated upstream


@pytest.fixture
def no_weight_dirs(tmp_path, monkeypatch):
    """No weight file anywhere: empty cache, no env variables."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("VQVDM_WEIGHTS_DIR", "VQVDM_I3D_PRETRAINED_400", "VQVDM_I3D_TORCHSCRIPT", "VQVDM_C3D_UCF101"):
        monkeypatch.delenv(var, raising=False)


def randomize_batch_norm(module: nn.Module, seed: int) -> None:
    """Give every batch norm non-trivial statistics so a missed buffer would change the output."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_i3d_has_the_community_state_dict_layout():
    state = InceptionI3d().state_dict()
    # Names and shapes of pytorch-i3d's InceptionI3d as converted from TF-Hub by VideoGPT/TATS.
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Conv3d_2c_3x3.bn.running_var"].shape == (192,)
    assert state["Mixed_4b.b1b.conv3d.weight"].shape == (208, 96, 3, 3, 3)
    assert state["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert state["logits.conv3d.bias"].shape == (400,)
    assert not any(k.startswith("logits.bn") for k in state)
    assert sum(k.endswith(".conv3d.weight") for k in state) == 3 + 9 * 6 + 1


def test_i3d_state_dict_file_loads_and_gives_identical_features(tmp_path):
    torch.manual_seed(0)
    source = InceptionI3d().eval()
    randomize_batch_norm(source, seed=1)
    path = tmp_path / "i3d_pretrained_400.pt"
    # Saved without num_batches_tracked, as TATS's converted file is.
    torch.save({k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}, path)

    protocol = I3DProtocol(i3d_weights=str(path), resolution=32, num_frames=None)
    loaded = load_i3d_network(protocol)
    video = torch.rand(1, 3, 8, 40, 40) * 2 - 1
    features = I3DFeatures(loaded, torchscript=False, protocol=protocol)(video)
    with torch.no_grad():
        expected = source(prepare_clips(video, size=32))
    assert features.shape == (1, 400)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_i3d_state_dict_with_wrong_keys_is_a_clear_error(tmp_path):
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="does not fit InceptionI3d.*missing"):
        load_i3d_network(I3DProtocol(i3d_weights=str(path)))


class ScriptedI3D(nn.Module):
    """Stand-in with StyleGAN-V's TorchScript I3D call signature."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 6)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> Tensor:
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = torch.nn.functional.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear")
        feats = self.proj(x.mean(dim=(3, 4)).transpose(1, 2)).mean(dim=1)  # (B, 6)
        return feats if return_features else feats.softmax(dim=1)


def test_torchscript_i3d_loads_and_is_called_with_preprocessed_clips(tmp_path):
    torch.manual_seed(0)
    module = ScriptedI3D()
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(module).save(str(path))
    protocol = I3DProtocol(i3d_format="torchscript", i3d_weights=str(path), resolution=16, num_frames=None)
    network = load_i3d_network(protocol)
    video = torch.rand(2, 3, 4, 20, 12) * 2 - 1
    features = I3DFeatures(network, torchscript=True, protocol=protocol)(video)
    expected = module(prepare_clips(video, size=16), rescale=False, resize=False, return_features=True)
    torch.testing.assert_close(features, expected)


def test_broken_torchscript_file_is_a_clear_error(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(MissingFileError, match="not a loadable TorchScript file"):
        load_i3d_network(I3DProtocol(i3d_format="torchscript", i3d_weights=str(path)))


def test_missing_i3d_weights_name_the_file_the_places_and_the_source(no_weight_dirs):
    with pytest.raises(MissingFileError) as info:
        load_i3d_network(I3DProtocol())
    text = str(info.value)
    assert "i3d_pretrained_400.pt" in text and "Kinetics-400" in text
    assert "$VQVDM_I3D_PRETRAINED_400 (not set)" in text and "$VQVDM_WEIGHTS_DIR (not set)" in text
    assert "vqvdm/weights/i3d_pretrained_400.pt" in text
    assert "TATS" in text


def test_missing_c3d_torchscript_names_stylegan_v_file(no_weight_dirs):
    with pytest.raises(MissingFileError, match=r"c3d_ucf101\.pt.*UCF-101(.|\n)*stylegan-v"):
        load_c3d_network(C3DProtocol())


TINY_C3D = dict(widths=(2, 3, 4, 4, 4), fc_dim=8, num_classes=5)


def test_c3d_state_dict_file_loads_and_gives_identical_probabilities(tmp_path):
    torch.manual_seed(0)
    source = C3D(**TINY_C3D).eval()
    path = tmp_path / "c3d.pt"
    torch.save(source.state_dict(), path)
    loaded = C3D(**TINY_C3D)
    loaded.load_state_dict(torch.load(path, weights_only=True))
    protocol = C3DProtocol(c3d_format="state_dict")
    video = torch.rand(1, 3, 16, 24, 24) * 2 - 1
    probs = C3DClassifier(loaded.eval(), torchscript=False, protocol=protocol)(video)
    # Independent preprocessing: 8-bit levels, 112x112 bilinear, BGR, 0..255 minus the mean.
    pixels = torch.round((video + 1) * 127.5)
    frames = torch.nn.functional.interpolate(pixels[0].transpose(0, 1), size=(112, 112), mode="bilinear")
    x = frames.transpose(0, 1)[None].flip(1) - source.pixel_mean
    with torch.no_grad():
        expected = source(x).softmax(dim=1).double()
    assert probs.shape == (1, 5)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


def test_full_size_c3d_has_tgan2_layer_names_and_loads_a_file_of_them(tmp_path):
    with torch.device("meta"):
        state = C3D().state_dict()
    assert state["conv1a.weight"].shape == (64, 3, 3, 3, 3)
    assert state["conv5b.weight"].shape == (512, 512, 3, 3, 3)
    assert state["fc6.weight"].shape == (4096, 512 * 4 * 4)
    assert state["fc8.weight"].shape == (101, 4096)
    # The loader path: a tiny C3D file with its own class count and a full mean volume.
    source = C3D(**TINY_C3D)
    source.pixel_mean = torch.rand(3, 16, 112, 112) * 255
    path = tmp_path / "c3d_ucf101_state_dict.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(UserError, match="does not fit C3D"):  # reference widths != tiny widths
        load_c3d_network(C3DProtocol(c3d_format="state_dict", c3d_weights=str(path)))
    target = C3D(**TINY_C3D)
    target.load_state_dict(torch.load(path, weights_only=True))
    torch.testing.assert_close(target.pixel_mean, source.pixel_mean)


def test_prepare_clips_resizes_or_crops_and_rounds_to_8_bit_levels():
    video = torch.rand(2, 3, 3, 30, 60) * 2 - 1
    resized = prepare_clips(video, size=20, spatial="resize")
    cropped = prepare_clips(video, size=20, spatial="center_crop")
    assert resized.shape == cropped.shape == (2, 3, 3, 20, 20)
    # Centre crop of a 2:1 frame after resizing its height to 20: the middle 20 of 40 columns.
    full = prepare_clips(video, size=20, spatial="center_crop", quantize=True)
    wide = torch.nn.functional.interpolate(
        (torch.round((video + 1) * 127.5) / 127.5 - 1).transpose(1, 2).flatten(0, 1), size=(20, 40),
        mode="bilinear").unflatten(0, (2, 3)).transpose(1, 2)
    torch.testing.assert_close(full, wide[..., 10:30])
    same_size = prepare_clips(video[..., :30], size=30)
    levels = (same_size + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)

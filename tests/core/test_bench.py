"""`vqvdm bench` (the paper's Table 3 in one command), its measuring tools, and the fast paths of
the U-Net and of decoding that it measures (their numerics must not change)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from standins import tiny_recipe
from torch import nn
from typer.testing import CliRunner

from vqvdm_core.cli import app
from vqvdm_core.profiling.table3 import count_flops, peak_memory, pixel_recipe, precision_probe
from vqvdm_core.recipe import load_recipe
from vqvdm_core.system import build_system

runner = CliRunner()

TABLE_ROWS = ["clip", "denoiser input (c,t,h,w)", "tokenizer (params)", "denoiser (params)",
              "denoiser batch", "2 steps + decode", "step time (median)", "decode time (median)",
              "FLOPs per step", "FLOPs per decode", "achieved (steps)", "achieved (decode)",
              "peak memory"]


@pytest.fixture
def recipe_file(tmp_path: Path, module_standins) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(), sort_keys=False))
    return path


def bench(recipe_file: Path, *extra: str):
    args = ["bench", str(recipe_file), "--steps", "2", "--pixel-steps", "1", "--threads", "1", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


# -- the command --------------------------------------------------------------------------------


def test_bench_prints_every_measurement_and_says_what_was_extrapolated(recipe_file):
    out = bench(recipe_file).stdout
    for row in TABLE_ROWS:
        assert row in out, row
    assert "pixel: timed 1 of 2 steps, per-step median x 2 + decode (extrapolated)" in out
    assert "latent: all 2 steps + decode timed" in out
    assert "faster than pixel space" in out and "paper Table 3: 35.26 s / 3.95 s = 8.9x" in out
    assert "conv3d probe fp32" in out and "matmul" in out and "load average" in out


def test_bench_json_has_every_field_with_consistent_totals(recipe_file):
    data = json.loads(bench(recipe_file, "--json").stdout)
    for key in ("recipe", "device", "precision", "threads", "load_average", "steps", "repeats",
                "matmul_flops_per_second", "precision_probe", "latent", "pixel", "speedup",
                "speedup_spread", "paper", "torch_version"):
        assert key in data, key
    assert data["threads"] == 1 and data["steps"] == 2 and data["precision"] in ("fp32", "bf16")
    lat, pix = data["latent"], data["pixel"]
    # The recipe's tiny tokenizer halves the 8x8 frames into 2 channels; pixel space runs RGB at
    # half the recipe's frame size (Table 3's 64 vs 128).
    assert lat["clip_shape"] == [4, 8, 8] and lat["diffusion_shape"] == [2, 4, 4, 4]
    assert pix["clip_shape"] == [4, 4, 4] and pix["diffusion_shape"] == [3, 4, 4, 4]
    assert (lat["tokenizer"], pix["tokenizer"]) == ("tiny_tokenizer", "identity")
    assert lat["denoiser_config"]["in_channels"] == 2 and pix["denoiser_config"]["in_channels"] == 3
    assert lat["denoiser_batch"] == pix["denoiser_batch"] == 2  # a labelled clip: CFG doubles the batch
    assert (lat["timed_steps"], lat["extrapolated"]) == (2, False)
    assert (pix["timed_steps"], pix["extrapolated"]) == (1, True)
    for system in (lat, pix):
        step, decode, total = system["step_seconds"], system["decode_seconds"], system["total_seconds"]
        # Both totals are 2 steps + decode: measured for the latent system (with 2 timed steps the
        # median is their mean), extrapolated from the median of 1 timed step for the pixel one.
        assert total["median"] == pytest.approx(2 * step["median"] + decode["median"], rel=1e-6)
        assert system["flops_per_step"] > 0
        assert system["step_flops_per_second"] == pytest.approx(system["flops_per_step"] / step["median"])
        assert system["peak_memory_method"]
    assert data["speedup"] == pytest.approx(pix["total_seconds"]["median"] / lat["total_seconds"]["median"])
    # The tiny tokenizer decodes with one ConvTranspose3d(2 -> 3, kernel 1x2x2) over 4x4x4 latent
    # positions: 2 * C_in * C_out * kernel * positions; identity decoding costs nothing.
    assert lat["flops_decode"] == 2 * 2 * 3 * 4 * 64
    assert pix["flops_decode"] == 0


def test_bench_times_a_transformer_denoiser_in_both_spaces(tmp_path, module_standins):
    path = tmp_path / "dit.yaml"
    dit = {"name": "dit3d", "width": 16, "depth": 2, "heads": 2, "patch_size": 2}
    path.write_text(yaml.safe_dump(tiny_recipe(denoiser=dit), sort_keys=False))
    data = json.loads(bench(path, "--json").stdout)
    lat, pix = data["latent"], data["pixel"]
    assert lat["denoiser"] == pix["denoiser"] == "dit3d"
    assert lat["denoiser_config"]["in_channels"] == 2 and pix["denoiser_config"]["in_channels"] == 3
    assert lat["flops_per_step"] > 0 and pix["flops_per_step"] > 0  # the attention kernels counted


def test_bench_pixel_size_option_and_repeats(recipe_file):
    data = json.loads(bench(recipe_file, "--json", "--pixel-size", "8", "--repeats", "2").stdout)
    assert data["pixel"]["clip_shape"] == [4, 8, 8]
    assert data["latent"]["total_seconds"]["n"] == data["pixel"]["total_seconds"]["n"] == 2
    assert data["speedup_spread"]["n"] == 2


def test_bench_rejects_an_unknown_precision(recipe_file):
    result = runner.invoke(app, ["bench", str(recipe_file), "--precision", "fp8"])
    assert result.exit_code == 2
    assert "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'" in " ".join(result.output.replace("│", " ").split())


def test_bench_needs_no_training_file_such_as_lpips_vgg16(tmp_path, module_standins, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))  # no VGG16 file anywhere
    vqgan = {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 2, "channels": 8, "channel_mults": [1, 1],
             "num_res_blocks": 0, "mid_blocks": 0, "norm_groups": 0, "num_codes": 16,
             "perceptual_weight": 1.0, "perceptual_pretrained": True}
    path = tmp_path / "lpips.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tokenizer=vqgan), sort_keys=False))
    bench(path)
    # ... while training that tokenizer would need it, and `vqvdm run` says so before any work
    result = runner.invoke(app, ["run", str(path), "--set", f"output_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2
    assert "tokenizer (vqgan3d): LPIPS needs torchvision's ImageNet VGG16 weights" in result.output
    assert not (tmp_path / "runs" / "tiny" / "recipe.yaml").exists()


def test_pixel_recipe_swaps_in_the_identity_tokenizer_and_rewires_in_channels(module_standins):
    recipe = load_recipe(tiny_recipe(denoiser={"name": "tiny_denoiser", "in_channels": 2, "emb_dim": 8}))
    pixel = pixel_recipe(recipe)
    assert pixel.tokenizer.name == "identity"
    assert pixel.denoiser.config.in_channels is None and pixel.denoiser.config.emb_dim == 8
    system = build_system(pixel, num_classes=2, clip_shape=(4, 4, 4))
    assert system.denoiser.config.in_channels == 3 and system.latent_shape == (3, 4, 4, 4)


def test_clip_settings_ask_the_data_set_and_the_pixel_tokenizer_is_found_by_its_class(module_standins):
    from vqvdm_core.profiling.table3 import clip_settings, pixel_space_tokenizer
    from vqvdm_plugins.datasets import SyntheticMotion, VideoFolder

    # The stand-in data set cannot tell from its config: it is built and asked.
    assert clip_settings(load_recipe(tiny_recipe())) == ((4, 8, 8), 2)
    # Data sets that can tell from their config, without opening a file.
    assert VideoFolder.clip_shape_of(VideoFolder.Config(root="/nowhere", frames=5, size=6)) == (5, 6, 6)
    assert VideoFolder.num_classes_of(VideoFolder.Config(root="/nowhere")) is None
    config = SyntheticMotion.Config(frames=3, size=8, num_classes=5)
    assert (SyntheticMotion.clip_shape_of(config), SyntheticMotion.num_classes_of(config)) == ((3, 8, 8), 5)
    assert pixel_space_tokenizer() == "identity"  # the one tokenizer class declaring pixel_space


# -- measuring tools ----------------------------------------------------------------------------


def test_flop_count_matches_an_independent_count_on_a_tiny_conv():
    conv = nn.Conv3d(3, 5, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 4, 6, 6)
    with count_flops() as total:
        conv(x)
    # Every output value is a sum of C_in * 27 products: 2 FLOPs per multiply-add.
    assert total() == 2 * (2 * 5 * 4 * 6 * 6) * (3 * 27)


def test_flop_count_includes_attention_on_the_cpu():
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 8)
    with count_flops() as total:
        F.scaled_dot_product_attention(q, k, v)
    # q k^T: (10 x 8) @ (8 x 12) and softmax(.) v: (10 x 12) @ (12 x 8), per batch and head.
    assert total() == 2 * 4 * (2 * 10 * 8 * 12 + 2 * 10 * 12 * 8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from /proc")
def test_peak_memory_sees_an_allocation_inside_and_not_memory_held_before():
    held = torch.ones(30_000_000)  # 120 MB in use before the block
    with peak_memory(torch.device("cpu")) as memory:
        temporary = torch.ones(25_000_000)  # 100 MB, freed inside
        del temporary
    if memory.bytes is None:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    assert 90e6 < memory.bytes < 200e6, memory
    assert "RSS" in memory.method
    del held


def test_precision_probe_times_both_precisions_and_says_which_is_faster():
    probe = precision_probe(torch.device("cpu"), channels=4)
    assert probe["fp32_ms"] > 0 and probe["bf16_ms"] > 0
    assert probe["bf16_over_fp32"] == pytest.approx(probe["bf16_ms"] / probe["fp32_ms"])
    assert isinstance(probe["cpu_native_bf16"], bool)


def test_precision_probe_on_a_gpu_times_a_convolution_large_enough_to_not_be_launch_bound():
    from vqvdm_core.profiling.measure import PROBE_SHAPES

    channels, (b, c, t, h, w), calls = PROBE_SHAPES["cuda"]
    flops = 2 * 27 * channels * c * b * (t - 2) * h * w  # 3x3x3, no temporal padding
    assert c == channels and flops > 1e11 and calls >= 10  # ~1 ms of fp32 on an H100, per call
    cpu_channels, cpu_shape, _ = PROBE_SHAPES["cpu"]
    assert (cpu_channels, cpu_shape) == (32, (2, 32, 6, 16, 16))  # the CPU's figures stay comparable


@pytest.mark.parametrize("fp32_ms, bf16_ms, faster", [(1.0, 3.0, False), (3.0, 1.0, True), (1.0, 0.95, False)])
def test_precision_probe_decides_from_each_precisions_own_timing(monkeypatch, fp32_ms, bf16_ms, faster):
    """A clock that makes every bf16 convolution take bf16_ms and every fp32 one fp32_ms."""
    import vqvdm_core.profiling.measure as bench  # precision_probe lives in vqvdm_core.profiling.measure

    entered: list[str] = []
    real_autocast = bench.autocast

    def recording_autocast(device, precision):
        entered.append(precision)
        return real_autocast(device, precision)

    now = [0.0]

    def clock() -> float:  # each read moves on by the current precision's time: start and end differ by it
        now[0] += (bf16_ms if entered[-1] == "bf16" else fp32_ms) / 1e3
        return now[0]

    monkeypatch.setattr(bench, "autocast", recording_autocast)
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    probe = precision_probe(torch.device("cpu"), channels=4)
    monkeypatch.undo()
    assert entered == ["fp32", "bf16"]  # each timed under its own autocast
    assert probe["fp32_ms"] == pytest.approx(fp32_ms) and probe["bf16_ms"] == pytest.approx(bf16_ms)
    assert probe["bf16_faster"] is faster  # bf16 must be > 10 % faster to be chosen


# -- chunked decoding ---------------------------------------------------------------------------


def test_chunked_decode_equals_one_batch_and_clamps(module_standins):
    system = build_system(load_recipe(tiny_recipe()), num_classes=2, clip_shape=(4, 8, 8)).eval()
    z = torch.randn(5, 2, 4, 4, 4) * 3
    whole = system.decode(z, batch_size=5)
    for chunk in (1, 2, None):
        # A convolution's kernel may block a batch of 1 differently from a batch of 5 (per CPU, per
        # library version): the bound is float32 rounding of values in [-1, 1], far below the O(1)
        # error of a chunk put in the wrong place.
        torch.testing.assert_close(system.decode(z, batch_size=chunk), whole, rtol=0, atol=1e-6)
    expected = system.tokenizer.decode(z).clamp(-1, 1)
    torch.testing.assert_close(whole, expected)
    assert whole.abs().max() == 1.0  # large latents decode out of range: clamped


def test_default_decode_chunk_holds_about_a_million_output_values(module_standins):
    system = build_system(load_recipe(tiny_recipe()), num_classes=2, clip_shape=(4, 8, 8))
    calls = []
    original = system.tokenizer.decode
    system.tokenizer.decode = lambda latent: calls.append(latent.shape[0]) or original(latent)
    system.decode(torch.randn(3, 2, 4, 4, 4))
    assert calls == [3]  # 3 x 768 output values fit in one chunk
    system.clip_shape = (16, 128, 128)  # the paper's clip: 786,432 values, one clip per chunk
    calls.clear()
    system.decode(torch.randn(3, 2, 4, 4, 4))
    assert calls == [1, 1, 1]


# -- the U-Net's fast paths keep its numerics ---------------------------------------------------


from vqvdm_plugins.unet3d import UNet3D  # noqa: E402
from vqvdm_plugins.unet3d import padding as unet_padding  # noqa: E402
from vqvdm_plugins.unet3d.conv_gemm import conv3d_gemm, prefers_gemm  # noqa: E402
from vqvdm_plugins.unet3d.resample import nearest_upsample_2x  # noqa: E402
from vqvdm_plugins.unet3d.residual_block import PointwiseConv3d  # noqa: E402


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 3, 3), (3, 1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gemm_convolution_equals_conv3d(kernel, channels_last):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 4, 3, generator=gen)
    weight = torch.randn(7, 6, *kernel, generator=gen)
    bias = torch.randn(7, generator=gen)
    extra = torch.randn(2, 7, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        weight = weight.contiguous(memory_format=torch.channels_last_3d)
    padding = tuple(k // 2 for k in kernel)
    expected = F.conv3d(x, weight, bias, padding=padding) + extra[:, :, None, None, None]
    got = conv3d_gemm(x, weight, bias, padding=padding, extra_bias=extra)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv3d_gemm(x, weight, None, padding=padding),
                               F.conv3d(x, weight, None, padding=padding), rtol=1e-5, atol=1e-5)


def test_gemm_path_only_without_gradients_on_cpu_when_channels_outnumber_positions():
    x, weight = torch.randn(2, 8, 6, 4, 4), torch.randn(512, 8, 3, 3, 3)
    with torch.no_grad():
        assert prefers_gemm(x, weight, out_positions=128)
        assert not prefers_gemm(x, weight, out_positions=2048)
    assert not prefers_gemm(x, weight.requires_grad_(), out_positions=128)  # training: oneDNN


def test_pointwise_conv_equals_a_1x1x1_conv3d_with_the_same_state_dict():
    gen = torch.Generator().manual_seed(0)
    plain = nn.Conv3d(6, 4, kernel_size=1)
    fast = PointwiseConv3d(6, 4)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 3, 4, 5, generator=gen)
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        torch.testing.assert_close(fast(x.contiguous(memory_format=layout)), plain(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_nearest_upsample_equals_interpolate_and_keeps_the_memory_layout(layout):
    x = torch.randn(2, 5, 3, 4, 6).contiguous(memory_format=layout).requires_grad_()
    up = nearest_upsample_2x(x)
    reference = F.interpolate(x.detach(), scale_factor=(1.0, 2.0, 2.0), mode="nearest")
    assert torch.equal(up, reference)
    assert up.is_contiguous(memory_format=layout)
    grad = torch.randn_like(up)
    up.backward(grad)
    expected = grad.reshape(2, 5, 3, 4, 2, 6, 2).sum(dim=(4, 6))  # each input pixel feeds 2x2 outputs
    torch.testing.assert_close(x.grad, expected)
    assert x.grad.is_contiguous(memory_format=layout)


def _random_unet(**overrides) -> UNet3D:
    config = dict(in_channels=4, channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_head_dim=8)
    unet = UNet3D(**{**config, **overrides})  # training mode (dropout is 0: same function)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return unet


@pytest.mark.parametrize("mode", ["train", "eval"])  # default-layout / channels-last weights
def test_unet_output_is_the_same_with_and_without_the_gemm_path(monkeypatch, mode):
    unet = _random_unet().train(mode == "train")
    x, t, emb = torch.randn(1, 4, 2, 4, 4), torch.tensor([7]), torch.randn(1, unet.emb_dim)
    taken = []

    def spy(x, weight, out_positions):
        choice = prefers_gemm(x, weight, out_positions)
        taken.append(choice)
        return choice

    monkeypatch.setattr(unet_padding, "prefers_gemm", spy)
    with torch.no_grad():
        fast = unet(x, t, emb)
    assert any(taken) and not all(taken)  # the 2x2 level (32 channels > 8 positions) used it
    monkeypatch.setattr(unet_padding, "prefers_gemm", lambda *args, **kwargs: False)
    with torch.no_grad():
        plain = unet(x, t, emb)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert fast.is_contiguous()


def test_unet_weights_are_channels_last_only_in_eval_mode_and_saved_plain():
    unet = _random_unet()  # built in training mode
    conv_weights = [m.weight for m in unet.modules() if isinstance(m, nn.Conv3d)]
    assert all(w.is_contiguous() for w in conv_weights)
    x, t = torch.randn(2, 4, 2, 4, 4), torch.tensor([3, 500])
    with torch.no_grad():
        in_training_mode = unet(x, t)
    unet.eval()
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in conv_weights)
    assert [m.weight for m in unet.modules() if isinstance(m, nn.Conv3d)] == conv_weights  # same Parameters
    state = unet.state_dict()
    assert all(v.is_contiguous() for v in state.values())  # checkpoints never see the layout
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t), in_training_mode, rtol=1e-5, atol=1e-5)
    other = UNet3D(**unet.config.model_dump()).eval()
    other.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(other(x, t), unet(x, t), rtol=0, atol=0)
    unet.train()
    assert all(w.is_contiguous() for w in conv_weights)


def test_unet_training_gradients_are_unaffected_by_an_eval_round_trip():
    unet = _random_unet()
    x, t = torch.randn(2, 4, 2, 4, 4), torch.tensor([3, 500])

    def grads():
        unet.zero_grad(set_to_none=True)
        unet(x, t).square().mean().backward()
        return [p.grad.clone() for p in unet.parameters()]

    before = grads()
    unet.eval()
    unet.train()
    for a, b in zip(before, grads()):
        assert torch.equal(a, b)

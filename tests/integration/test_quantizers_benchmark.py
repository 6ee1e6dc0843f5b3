"""benchmarks/quantizers.py: its scores and its real-footage split, on files the test makes."""

from __future__ import annotations

import torch


def test_ssim_and_psnr_score_identity_and_noise_as_their_definitions(load_benchmark) -> None:
    bench = load_benchmark("quantizers")
    clips = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    assert abs(bench.ssim(clips, clips) - 1.0) < 1e-4 and bench.psnr(clips, clips) > 90
    noisy = (clips + 0.1 * torch.randn_like(clips)).clamp(-1, 1)
    assert bench.ssim(noisy, clips) < 0.99 and 20 < bench.psnr(noisy, clips) < 30
    assert bench.trilinear(clips).shape == clips.shape


def test_footage_is_split_in_time_with_no_frame_shared(tmp_path, load_benchmark) -> None:
    bench = load_benchmark("quantizers")
    from vqvdm_core.io.video import write_video

    frames = torch.randint(0, 256, (52, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path = write_video(frames, tmp_path / "walk.mkv", 25.0)  # lossless, 52 frames
    train, held = bench.footage_clips([path])
    assert train.shape[1:] == held.shape[1:] == (3, 16, 32, 32)
    assert len(train) == 6 and len(held) == 1  # starts 0, 4, ..., 20 within frames 0-35; held out: 36-51
    assert float(train.min()) >= -1 and float(train.max()) <= 1


def test_each_variant_is_the_quickstart_tokenizer_with_its_quantizer(load_benchmark) -> None:
    from vqvdm_core.recipe import ComponentSpec

    bench = load_benchmark("quantizers")
    assert "quantizer" not in bench.tokenizer_node("vq") and bench.tokenizer_node("vq")["num_codes"] == 1024
    for variant in ("fsq", "lfq", "kl"):
        node = bench.tokenizer_node(variant)
        assert not set(bench.VQ_FIELDS) & set(node) and node["quantizer"]["name"] == variant
        ComponentSpec.model_validate(node).resolve("tokenizer")  # a valid node


def test_quantizer_overrides_change_only_the_named_field(load_benchmark) -> None:
    import pytest

    from vqvdm_core.recipe import ComponentSpec

    bench = load_benchmark("quantizers")
    overrides = bench.parse_overrides(["fsq.saturation_weight=0", "vq.beta=0.5", "kl.kl_weight=1e-4"])
    assert overrides == {"fsq": {"saturation_weight": 0}, "vq": {"beta": 0.5}, "kl": {"kl_weight": 1e-4}}
    # vq, given as a node with one field changed: the quickstart's quantizer otherwise, field for field
    built = ComponentSpec.model_validate(bench.tokenizer_node("vq", overrides["vq"])).build("tokenizer").quantizer
    plain = ComponentSpec.model_validate(bench.tokenizer_node("vq")).build("tokenizer").quantizer
    assert built.config.model_dump() == plain.config.model_dump() | {"beta": 0.5}
    fsq = bench.tokenizer_node("fsq", overrides["fsq"])["quantizer"]
    assert fsq == {"name": "fsq", "levels": [8, 5, 5, 5], "saturation_weight": 0}
    with pytest.raises(SystemExit, match="expected VARIANT.FIELD=VALUE"):
        bench.parse_overrides(["fsq=0"])

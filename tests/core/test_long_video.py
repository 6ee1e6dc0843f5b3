"""Long videos and continuations: window plans, known-frame conditioning, chunked decoding."""

from __future__ import annotations

import pytest
import torch
from test_system import PoolTokenizer, make_system, randomize

from vqvdm_core import create
from vqvdm_core.errors import UserError
from vqvdm_core.interfaces.sampler import SamplingChain
from vqvdm_core.system import LatentVideoDiffusion, known_input, known_prefix
from vqvdm_core.system.long_video import Window, condition_on_known, decode_in_chunks, plan_windows

# -- window plans -------------------------------------------------------------------------------


def test_windows_cover_the_long_latent_each_keeping_the_overlap():
    plan = plan_windows(16, window=8, overlap=4)
    assert plan == [Window(0, 0, 8), Window(4, 4, 12), Window(8, 4, 16)]
    generated = [f for w in plan for f in range(w.first_new, w.end)]
    assert generated == list(range(16))  # every frame generated exactly once


def test_the_last_window_slides_back_to_stay_full_length():
    plan = plan_windows(9, window=4, overlap=1)
    assert plan[-1] == Window(5, 2, 9)  # 1 known would leave a 3-frame window; it keeps 2 instead
    assert all(w.length == 4 for w in plan)


def test_a_context_fills_the_first_window_as_far_as_it_fits():
    assert plan_windows(8, window=4, overlap=2, context=2)[0] == Window(0, 2, 4)
    assert plan_windows(8, window=4, overlap=2, context=6)[0] == Window(3, 3, 7)  # window - 1 known


@pytest.mark.parametrize("overlap", [0, 8, 9])
def test_an_overlap_outside_the_window_is_refused(overlap):
    with pytest.raises(UserError, match="overlap must be between 1 and 7"):
        plan_windows(16, window=8, overlap=overlap)


# -- known-frame conditioning -----------------------------------------------------------------------


def mixing_denoise(matrix: torch.Tensor):
    """A linear stand-in: x0 = matrix @ x along time, eps from x0 (alpha = sigma = 1/sqrt 2)."""

    def denoise(x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = torch.einsum("st,bctxy->bcsxy", matrix, x)
        return x0, x - x0

    return denoise


def test_replacement_holds_the_known_frames_and_leaves_the_estimate_of_the_others():
    chain = SamplingChain(timesteps=(10,), alphas_cumprod=(0.5,))
    matrix = torch.eye(4) + 0.3 * torch.ones(4, 4)
    known = torch.randn(2, 3, 1, 2, 2)
    x = torch.randn(2, 3, 4, 2, 2)
    wrapped = condition_on_known(mixing_denoise(matrix), chain, known, generator=torch.Generator().manual_seed(0))
    x0, eps = wrapped(x, 0)
    assert torch.equal(x0[:, :, :1], known)
    noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(0))
    replaced = x.clone()
    replaced[:, :, :1] = chain.alpha(0) * known + chain.sigma(0) * noise
    expected = torch.einsum("st,bctxy->bcsxy", matrix, replaced)
    torch.testing.assert_close(x0[:, :, 1:], expected[:, :, 1:])
    torch.testing.assert_close(eps[:, :, :1], noise)


def test_reconstruction_guidance_follows_the_gradient_of_the_known_frames_error():
    """VDM Eq. 7 for a linear model, where the gradient has a closed form."""
    chain = SamplingChain(timesteps=(10,), alphas_cumprod=(0.64,))
    matrix = torch.eye(3) + 0.25 * torch.ones(3, 3)
    known = torch.randn(1, 2, 1, 1, 1)
    x = torch.randn(1, 2, 3, 1, 1)
    weight = 1.5
    gen = torch.Generator().manual_seed(3)
    x0, eps = condition_on_known(mixing_denoise(matrix), chain, known, method="reconstruction", weight=weight,
                                 generator=gen)(x, 0)
    noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(3))
    state = x.clone()
    state[:, :, :1] = 0.8 * known + 0.6 * noise
    plain = torch.einsum("st,bctxy->bcsxy", matrix, state)
    residual = known - plain[:, :, :1]  # error = ||residual||^2; d/dx_b = -2 M[0, b] residual
    grad = -2 * matrix[0][None, None, :, None, None] * residual
    expected = plain[:, :, 1:] - weight * 0.8 / 2 * grad[:, :, 1:]
    torch.testing.assert_close(x0[:, :, 1:], expected)
    torch.testing.assert_close(eps[:, :, 1:], (state[:, :, 1:] - 0.8 * expected) / 0.6)
    assert torch.equal(x0[:, :, :1], known)


def test_an_unknown_method_or_a_bad_weight_is_refused():
    chain = SamplingChain(timesteps=(1,), alphas_cumprod=(0.5,))
    with pytest.raises(UserError, match="known-frames method"):
        condition_on_known(mixing_denoise(torch.eye(2)), chain, torch.zeros(1, 1, 1, 1, 1), method="inpaint")
    with pytest.raises(UserError, match="finite and >= 0"):
        condition_on_known(mixing_denoise(torch.eye(2)), chain, torch.zeros(1, 1, 1, 1, 1), weight=float("nan"))


# -- the system -------------------------------------------------------------------------------------


def trained_looking_system(**kwargs) -> LatentVideoDiffusion:
    system = make_system(**kwargs)
    randomize(system.denoiser)
    return system


def test_the_first_window_of_a_long_sample_is_the_plain_sample():
    system = trained_looking_system()
    kwargs = dict(labels=[0, 2], fps=[4.0, 8.0], steps=4, sampler="ddim", decode=False)
    plain = system.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    long = system.sample(2, generator=torch.Generator().manual_seed(0), frames=12, **kwargs)
    assert long.shape == (2, 3, 12, 4, 4)
    torch.testing.assert_close(long[:, :, :4], plain)


def test_a_long_sample_is_reproducible_and_reports_every_window():
    system = trained_looking_system()
    seen = []
    kwargs = dict(labels=[1], fps=[8.0], steps=3, sampler="dpmpp_2m", frames=16, overlap=1)
    a = system.sample(1, generator=torch.Generator().manual_seed(5), progress=lambda i, n: seen.append((i, n)),
                      **kwargs)
    b = system.sample(1, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.equal(a, b) and a.shape == (1, 3, 16, 8, 8)
    windows = len(system.plan(frames=16, overlap=1))
    assert windows == 5 and seen[-1] == (3 * windows, 3 * windows) and len(seen) == 3 * windows


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m", "unipc"])
@pytest.mark.parametrize("method", ["replacement", "reconstruction"])
def test_a_continuation_keeps_the_given_frames_with_any_sampler(sampler, method):
    system = trained_looking_system()
    context = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    z = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler=sampler, context=context,
                      frames=6, known_frames=method, decode=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[:, :, :2], system.tokenizer.encode(context))
    video = system.sample(2, labels=[0, 1], fps=[8.0, 8.0], steps=3, sampler=sampler, context=context,
                          frames=6, known_frames=method, generator=torch.Generator().manual_seed(0))
    assert torch.equal(video[:, :, :2], context)  # the given frames, exactly as given
    assert video.shape == (2, 3, 6, 8, 8)


def test_the_continuation_depends_on_the_given_frames():
    system = trained_looking_system()
    a, b = torch.full((1, 3, 2, 8, 8), -0.8), torch.full((1, 3, 2, 8, 8), 0.8)
    kwargs = dict(labels=[0], fps=[8.0], steps=3, sampler="ddim", frames=4, decode=False)
    za = system.sample(1, context=a, generator=torch.Generator().manual_seed(0), **kwargs)
    zb = system.sample(1, context=b, generator=torch.Generator().manual_seed(0), **kwargs)
    assert (za[:, :, 2:] - zb[:, :, 2:]).abs().mean() > 1e-3


@pytest.mark.parametrize("change, message", [
    (dict(frames=0), "frames must be at least 1"),
    (dict(context=torch.zeros(1, 3, 4, 8, 8)), "leaves nothing to generate"),
    (dict(context=torch.zeros(1, 3, 2, 8, 6)), "frames are 8x6 but the model makes 8x8"),
    (dict(context=torch.zeros(1, 2, 2, 8, 8)), "must be a video"),
    (dict(context=torch.full((1, 3, 2, 8, 8), float("nan"))), "non-finite"),
    (dict(frames=8, overlap=4), "overlap must be between 1 and 3"),
    (dict(frames=8, known_frames="inpaint"), "unknown known-frames method 'inpaint'"),
    (dict(frames=8, known_guidance=float("inf")), "known-frame guidance scale must be finite"),
    (dict(frames=8, reconstruction_weight=-1.0), "reconstruction guidance weight must be finite and >= 0"),
])
def test_bad_long_video_settings_are_refused_before_sampling(change, message):
    system = trained_looking_system()
    calls = []
    system.denoiser.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(UserError, match=message):
        system.sample(1, labels=[0], fps=[8.0], steps=2, sampler="ddim", **change)
    assert not calls


def test_frames_must_be_a_multiple_of_the_temporal_factor():
    vqgan = create("tokenizer", "vqgan3d", channels=4, channel_mults=(1, 1), num_res_blocks=0, mid_blocks=0,
                   norm_groups=0, temporal_factor=2, spatial_factor=2, num_codes=8, latent_channels=2,
                   perceptual_weight=0.0)
    denoiser = create("denoiser", "unet3d", in_channels=2, channels=8, channel_mults=[1], num_res_blocks=1,
                      attention_head_dim=4)
    system = LatentVideoDiffusion(tokenizer=vqgan, denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  clip_shape=(4, 8, 8))
    with pytest.raises(UserError, match=r"frames \(7\) must be a positive multiple of the tokenizer's "
                                        r"temporal factor \(2 frames"):
        system.plan(frames=7)
    with pytest.raises(UserError, match=r"context's frame count \(3\)"):
        system.plan(frames=8, context=torch.zeros(1, 3, 3, 8, 8))


# -- a denoiser trained with known frames -------------------------------------------------------------


def test_known_prefixes_are_drawn_at_the_rate_and_never_cover_the_whole_clip():
    z0 = torch.randn(4000, 2, 5, 1, 1)
    known = known_prefix(z0, rate=0.5, generator=torch.Generator().manual_seed(0))
    mask = known[:, -1, :, 0, 0]  # (B, T)
    lengths = mask.sum(1)
    assert abs(float((lengths > 0).float().mean()) - 0.5) < 0.03
    assert int(lengths.max()) == 4 and set(lengths.unique().tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.equal(known[:, :2], z0 * mask[:, None, :, None, None])  # the clean frames under the mask
    assert not known_prefix(z0, rate=0.0)[:, -1].any()


def test_known_input_is_the_prefix_then_zeros_with_a_mask_channel():
    prefix = torch.randn(2, 3, 2, 4, 4)
    given = known_input(prefix, 5)
    assert given.shape == (2, 4, 5, 4, 4)
    assert torch.equal(given[:, :3, :2], prefix) and not given[:, :3, 2:].any()
    assert given[:, 3, :2].eq(1).all() and given[:, 3, 2:].eq(0).all()


def frame_conditioned_system() -> LatentVideoDiffusion:
    torch.manual_seed(0)
    denoiser = create("denoiser", "unet3d", in_channels=3, channels=8, channel_mults=[1, 2], num_res_blocks=1,
                      attention_head_dim=4, known_frames=1.0, prediction_type="x0")
    system = LatentVideoDiffusion(tokenizer=PoolTokenizer(), denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  clip_shape=(4, 8, 8))
    randomize(system.denoiser)
    return system


def test_training_with_known_frames_scores_only_the_frames_not_given():
    system = frame_conditioned_system()
    seen = {}

    def zero_prediction(module, args, kwargs, output):
        seen["known"] = kwargs["known"]
        return torch.zeros_like(output)

    system.denoiser.register_forward_hook(zero_prediction, with_kwargs=True)
    latent = torch.randn(6, 3, 4, 4, 4)
    step = system.training_step({"latent": latent}, step=0)
    unknown = 1 - seen["known"][:, -1:]
    assert unknown.min() == 0 and unknown.sum() < unknown.numel()  # every clip got a prefix (rate 1)
    expected = (latent.pow(2) * unknown).sum() / (unknown.sum() * 3)  # x0 target, zero prediction
    torch.testing.assert_close(step.losses["denoiser"], expected)


def test_a_frame_conditioned_denoiser_sees_the_known_frames_in_every_window():
    system = frame_conditioned_system()
    inputs = []
    system.denoiser.register_forward_hook(lambda m, args, kwargs, out: inputs.append(kwargs.get("known")),
                                          with_kwargs=True)
    system.sample(1, steps=2, sampler="ddim", frames=8, overlap=2, generator=torch.Generator().manual_seed(0))
    first, later = inputs[:2], inputs[2:]
    assert all(k is None for k in first)  # window 1: nothing known
    assert later and all(k is not None and k[:, -1, :2].eq(1).all() and k[:, -1, 2:].eq(0).all() for k in later)


# -- decoding in temporal chunks ------------------------------------------------------------------------


def lean_vqgan(**changes):
    torch.manual_seed(0)
    config = dict(channels=4, channel_mults=(1, 2, 2), num_res_blocks=1, mid_blocks=1, norm_groups=0,
                  temporal_factor=2, spatial_factor=4, num_codes=16, latent_channels=2, perceptual_weight=0.0,
                  upsample="transposed", decode_quantizes=False)
    config.update(changes)
    return create("tokenizer", "vqgan3d", **config).eval()


@pytest.mark.parametrize("upsample", ["transposed", "nearest"])
def test_a_chunked_decode_equals_the_whole_decode_and_the_reach_is_what_a_frame_sees(upsample):
    tok = lean_vqgan(upsample=upsample)
    reach = tok.decode_context
    assert reach is not None and reach >= 1
    z = torch.randn(1, 2, 12, 2, 2)
    with torch.no_grad():
        whole = tok.decode(z)
        chunked = decode_in_chunks(tok.decode, z, chunk=3, reach=reach, frames_per_latent=2)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
        bumped = z.clone()
        bumped[:, :, 6] += 1.0
        changed = (tok.decode(bumped) - whole).abs().amax(dim=(0, 1, 3, 4)) > 1e-6  # per video frame
    frames = changed.nonzero().flatten()
    # Latent frame 6 is video frames 12-13; nothing beyond `reach` latent frames of it changes.
    assert frames.min() >= (6 - reach) * 2 and frames.max() < (7 + reach) * 2


def test_a_decoder_with_group_norm_decodes_long_latents_whole():
    assert lean_vqgan(norm_groups=2).decode_context is None
    assert create("tokenizer", "identity").decode_context == 0


def test_the_system_decodes_a_long_latent_in_chunks_equal_to_one_decode():
    tok = lean_vqgan()
    denoiser = create("denoiser", "unet3d", in_channels=2, channels=8, channel_mults=[1], num_res_blocks=1,
                      attention_head_dim=4)
    system = LatentVideoDiffusion(tokenizer=tok, denoiser=denoiser, schedule=create("schedule", "ddpm"),
                                  clip_shape=(4, 8, 8))
    calls = []
    original = tok.decode

    def counting(latent):
        calls.append(latent.shape[2])
        return original(latent)

    tok.decode = counting
    z = torch.randn(2, 2, 40, 2, 2)
    video = system.decode(z)
    assert max(calls) <= 2 + 2 * tok.decode_context < 40  # chunks of one window, widened by the reach
    tok.decode = original
    torch.testing.assert_close(video, tok.decode(z).clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_known_guidance_extrapolates_from_the_prediction_without_known_frames():
    from vqvdm_core.system.diffusion import _WithKnownFrames

    system = frame_conditioned_system()
    x, t = torch.randn(2, 3, 4, 4, 4), torch.tensor([10, 500])
    known = known_input(torch.randn(2, 3, 2, 4, 4), 4)
    with torch.no_grad():
        given = system.denoiser(x, t, None, known=known)
        free = system.denoiser(x, t, None, known=torch.zeros_like(known))
        guided = _WithKnownFrames(system.denoiser, known, 2.5)(x, t)
        plain = _WithKnownFrames(system.denoiser, known)(x, t)
    torch.testing.assert_close(guided, free + 2.5 * (given - free), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, given)

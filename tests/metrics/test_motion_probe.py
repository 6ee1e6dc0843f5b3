"""The analytic motion probe on clips rendered after the synthetic_motion spec, motion known."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vqvdm_plugins.metrics.motion_probe import MotionProbe, estimate_shift, fourier_shift


def render_clip(*, label: int, fps: float, seed: int, num_classes: int = 4, frames: int = 16, size: int = 32,
                speed: float = 0.25, num_shapes: int = 2, shape_size: float = 0.25, supersample: int = 4,
                vanish_after: int | None = None) -> torch.Tensor:
    """A uniform background and squares/discs translating with wrap-around, anti-aliased by
    supersampling (the synthetic_motion spec). ``vanish_after``: the last shape disappears from that
    frame on. -> (3, T, size, size) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    theta = 2 * math.pi * label / num_classes
    step = speed * size / fps
    vx, vy = step * math.cos(theta), -step * math.sin(theta)  # y points down
    background = torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1
    fine = size * supersample
    centres = (torch.arange(fine, dtype=torch.float64) + 0.5) / supersample
    xs, ys = centres.view(1, 1, fine), centres.view(1, fine, 1)
    t = torch.arange(frames, dtype=torch.float64).view(frames, 1, 1)
    canvas = background.view(3, 1, 1, 1).repeat(1, frames, fine, fine)
    half = shape_size * size / 2
    for k in range(num_shapes):
        colour = torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1
        while (colour - background).norm() < 0.8:  # clearly different from the background
            colour = torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1
        x0, y0 = (torch.rand(2, generator=g, dtype=torch.float64) * size).tolist()
        dx = torch.remainder(xs - (x0 + vx * t) + size / 2, size) - size / 2  # torus offsets
        dy = torch.remainder(ys - (y0 + vy * t) + size / 2, size) - size / 2
        inside = (dx.abs() <= half) & (dy.abs() <= half) if k % 2 == 0 else dx ** 2 + dy ** 2 <= half ** 2
        if vanish_after is not None and k == num_shapes - 1:
            inside = inside & (t < vanish_after)
        canvas = torch.where(inside.unsqueeze(0), colour.view(3, 1, 1, 1), canvas)
    return F.avg_pool2d(canvas.reshape(3 * frames, 1, fine, fine), supersample).reshape(3, frames, size, size).float()


def dataset(num_classes: int = 4, fps_values=(4.0, 8.0, 16.0), count: int = 12, **kw):
    """Clips, labels and fps in the data set's order (label i % K, fps cycling every K clips)."""
    labels = [i % num_classes for i in range(count)]
    fps = [fps_values[(i // num_classes) % len(fps_values)] for i in range(count)]
    video = torch.stack([render_clip(label=c, fps=f, seed=i, num_classes=num_classes, **kw)
                         for i, (c, f) in enumerate(zip(labels, fps))])
    return video, torch.tensor(labels), torch.tensor(fps)


def test_estimate_shift_recovers_sub_pixel_translations_of_band_limited_frames():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64)
    spectrum = torch.fft.fft2(noise)
    k = torch.fft.fftfreq(32, dtype=torch.float64)
    spectrum = spectrum * ((k.view(-1, 1).abs() < 0.2) & (k.view(1, -1).abs() < 0.2))  # smooth frame
    frame = torch.fft.ifft2(spectrum).real.expand(3, -1, -1, -1)
    shifts = torch.tensor([[0.3, -1.7], [5.5, 2.25], [-9.0, 0.0]], dtype=torch.float64)
    moved = fourier_shift(frame, shifts)
    torch.testing.assert_close(estimate_shift(frame, moved), shifts, atol=1e-4, rtol=0)


def test_probe_recovers_direction_and_speed_of_known_motion():
    video, labels, fps = dataset()
    probe = MotionProbe()
    probe.update(fake=video[:5], labels=labels[:5], fps=fps[:5])
    probe.update(fake=video[5:], labels=labels[5:], fps=fps[5:])
    out = probe.compute()
    assert out["num_clips"] == 12
    assert out["class_accuracy"] == 1.0
    assert out["speed_rel_error"] < 0.01
    assert out["fps_speed_spearman"] < -0.8  # lower FPS, larger steps: a negative correlation
    assert out["motion_consistency"] == 1.0
    assert out["persistence"] == 1.0


def test_probe_handles_eight_directions_with_sub_pixel_steps():
    video, labels, fps = dataset(num_classes=8, fps_values=(5.0, 12.0), count=16)
    probe = MotionProbe(num_classes=8)
    probe.update(fake=video, labels=labels, fps=fps)
    out = probe.compute()
    assert out["class_accuracy"] == 1.0
    assert out["speed_rel_error"] < 0.02
    assert out["persistence"] == 1.0


def test_scrambled_frame_order_scores_low_on_consistency_and_speed():
    video, labels, fps = dataset()
    g = torch.Generator().manual_seed(1)
    scrambled = torch.stack([clip[:, torch.randperm(clip.shape[1], generator=g)] for clip in video])
    probe = MotionProbe()
    probe.update(fake=scrambled, labels=labels, fps=fps)
    out = probe.compute()
    assert out["motion_consistency"] < 0.3
    assert out["speed_rel_error"] > 0.3
    assert out["class_accuracy"] < 1.0


def test_unrelated_frames_score_low_persistence():
    frames = [render_clip(label=0, fps=8.0, seed=100 + i, frames=1)[:, 0] for i in range(8 * 4)]
    video = torch.stack(frames, dim=1).reshape(3, 4, 8, 32, 32).transpose(0, 1)  # 4 clips of 8 unrelated frames
    probe = MotionProbe()
    probe.update(fake=video)
    out = probe.compute()
    assert out["persistence"] < 0.1
    assert math.isnan(out["class_accuracy"]) and math.isnan(out["fps_speed_spearman"])


def test_a_vanishing_object_breaks_persistence_from_that_frame_on():
    clip = render_clip(label=1, fps=8.0, seed=3, vanish_after=6)
    probe = MotionProbe()
    probe.update(fake=clip[None], labels=torch.tensor([1]), fps=torch.tensor([8.0]))
    # Frames 1..5 still match the first frame; frames 6..15 lack one shape.
    assert probe.compute()["persistence"] == pytest.approx(5 / 15)

"""The built-in synthetic_motion data set: determinism, balance, and motion that matches its spec."""

from __future__ import annotations

import math

import pytest
import torch
from vqvdm_plugins.datasets import SyntheticMotion

from vqvdm_core.interfaces import VideoDataset
from vqvdm_core.recipe import ComponentSpec


def centroids(video: torch.Tensor) -> torch.Tensor:
    """``(T, 2)`` x, y of the mass that differs from the background, per frame, on the torus.

    The background is each frame's median colour (the shapes cover a small part); the weight of
    a pixel is its colour distance from it. Circular means make wrapping around the edges harmless.
    """
    _, _, h, w = video.shape
    video = video.double()
    background = video.flatten(2).median(dim=2).values  # (3, T)
    weight = (video - background[:, :, None, None]).norm(dim=0)  # (T, H, W)
    angle_x = (torch.arange(w) + 0.5) * 2 * math.pi / w
    angle_y = (torch.arange(h) + 0.5) * 2 * math.pi / h
    zx = (weight.sum(1) * torch.exp(1j * angle_x)).sum(-1)  # (T,)
    zy = (weight.sum(2) * torch.exp(1j * angle_y)).sum(-1)
    return torch.stack([torch.angle(zx) * w / (2 * math.pi), torch.angle(zy) * h / (2 * math.pi)], dim=1)


def steps(video: torch.Tensor) -> torch.Tensor:
    """``(T - 1, 2)`` centroid displacement between consecutive frames, unwrapped."""
    size = video.shape[-1]
    return torch.remainder(torch.diff(centroids(video), dim=0) + size / 2, size) - size / 2


def test_the_same_seed_gives_the_same_clip_and_another_seed_a_different_one() -> None:
    a, b = SyntheticMotion(size=32, frames=4, seed=7), SyntheticMotion(size=32, frames=4, seed=7)
    other = SyntheticMotion(size=32, frames=4, seed=8)
    assert torch.equal(a[5]["video"], b[5]["video"])
    assert not torch.equal(a[5]["video"], other[5]["video"])
    assert not torch.equal(a[5]["video"], a[9]["video"])  # same class, another clip


def test_clip_i_is_drawn_from_a_generator_seeded_with_seed_times_1000003_plus_i() -> None:
    ds = SyntheticMotion(size=16, frames=3, seed=2)
    expected = ds.render(torch.Generator().manual_seed(2 * 1_000_003 + 6), ds.velocity(6))
    assert torch.equal(ds[6]["video"], expected)


def test_items_have_the_declared_shape_range_and_types() -> None:
    ds = SyntheticMotion(size=24, frames=5, num_clips=6)
    assert isinstance(ds, VideoDataset) and len(ds) == 6 and ds.clip_shape == (5, 24, 24)
    item = ds[3]
    assert item["video"].shape == (3, 5, 24, 24) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert isinstance(item["fps"], float) and isinstance(item["label"], int)


def test_classes_are_balanced_and_fps_values_cycle() -> None:
    ds = SyntheticMotion(size=8, frames=1, num_clips=24, num_classes=4, fps_values=[4.0, 8.0, 16.0])
    labels = [ds.label(i) for i in range(24)]
    assert [labels.count(c) for c in range(4)] == [6, 6, 6, 6]
    assert [ds.fps(i) for i in range(0, 24, 4)] == [4.0, 8.0, 16.0, 4.0, 8.0, 16.0]
    # Every (class, fps) pair occurs equally often.
    pairs = [(ds.label(i), ds.fps(i)) for i in range(24)]
    assert len(set(pairs)) == 12 and all(pairs.count(p) == 2 for p in set(pairs))


def test_class_names_are_directions() -> None:
    assert SyntheticMotion(num_classes=4).class_names == ["right", "up", "left", "down"]
    assert SyntheticMotion(num_classes=3).class_names == ["dir0", "dir1", "dir2"]
    assert SyntheticMotion(num_classes=3).num_classes == 3


@pytest.mark.parametrize("index,direction", [(0, (1, 0)), (1, (0, -1)), (2, (-1, 0)), (3, (0, 1))])
def test_four_classes_move_right_up_left_down_by_speed_times_size_over_fps(index: int,
                                                                         direction: tuple[int, int]) -> None:
    ds = SyntheticMotion(size=32, frames=6, num_shapes=1, speed=0.25, fps_values=[4.0], seed=1)
    measured = steps(ds[index]["video"]).mean(0)
    expected = 0.25 * 32 / 4.0  # 2 pixels per frame
    assert measured.tolist() == pytest.approx([expected * direction[0], expected * direction[1]], abs=0.02)


def test_sub_pixel_motion_in_any_direction_matches_the_spec() -> None:
    ds = SyntheticMotion(size=50, frames=8, num_shapes=1, num_classes=6, speed=0.3,
                         fps_values=[3.0, 7.0], shape_size=0.2, num_clips=12, seed=5)
    for i in range(12):
        theta = 2 * math.pi * ds.label(i) / 6
        d = 0.3 * 50 / ds.fps(i)  # 5 or ~2.14 pixels per frame
        expected = torch.tensor([d * math.cos(theta), -d * math.sin(theta)], dtype=torch.float64)
        measured = steps(ds[i]["video"])
        assert (measured.mean(0) - expected).abs().max() < 0.06, (i, measured.mean(0), expected)
        assert (measured - expected).abs().max() < 0.3  # each single step, too


def test_edges_are_anti_aliased() -> None:
    video = SyntheticMotion(size=32, frames=2, num_shapes=1, fps_values=[7.0], seed=3)[0]["video"]
    colours = torch.unique(video[:, 1].flatten(1), dim=1)
    assert colours.shape[1] > 2  # background, shape, and blends along the edges


def test_shapes_stand_out_from_the_background() -> None:
    ds = SyntheticMotion(size=32, frames=1, num_shapes=1, num_clips=20)
    for i in range(20):
        frame = ds[i]["video"][:, 0]  # (3, H, W)
        background = frame.flatten(1).median(dim=1).values
        distance = (frame - background[:, None, None]).norm(dim=0)
        assert distance.max() >= 0.8  # 0.4 in [0, 1] units is 0.8 in [-1, 1]


def test_fixed_colours_paint_every_clip_with_the_same_background_and_shape_colour() -> None:
    background, shape = (0.15, 0.15, 0.35), (0.95, 0.85, 0.3)
    ds = SyntheticMotion(size=16, frames=2, num_shapes=1, shape_size=0.4, num_clips=6,
                         background_colour=background, shape_colour=shape)
    expected_bg = torch.tensor(background) * 2 - 1
    expected_shape = torch.tensor(shape) * 2 - 1
    for i in range(6):
        video = ds[i]["video"]  # (3, T, H, W) in [-1, 1]
        pixels = video.flatten(1).T  # (T*H*W, 3)
        to_bg = (pixels - expected_bg).norm(dim=1)
        to_shape = (pixels - expected_shape).norm(dim=1)
        # Every pixel is the background, the shape, or (at the anti-aliased edge) a blend of the two.
        along = (pixels - expected_bg) @ (expected_shape - expected_bg) / (expected_shape - expected_bg).norm() ** 2
        blend = expected_bg + along[:, None].clamp(0, 1) * (expected_shape - expected_bg)
        assert torch.allclose(pixels, blend, atol=1e-5)
        assert (to_bg < 1e-5).any() and (to_shape < 1e-5).any()


def test_fixed_colours_too_close_together_are_refused_with_both_values() -> None:
    with pytest.raises(ValueError, match=r"shape_colour \[0.2, 0.2, 0.3\] is only 0.10 from"):
        SyntheticMotion(background_colour=(0.1, 0.2, 0.3), shape_colour=(0.2, 0.2, 0.3))


def test_shapes_of_fixed_colour_still_move_by_the_clips_velocity() -> None:
    common = dict(size=16, frames=3, num_shapes=1, num_clips=4)
    fixed = SyntheticMotion(**common, background_colour=(0.0, 0.0, 0.0), shape_colour=(1.0, 1.0, 1.0))
    for i in range(4):
        # A white shape on black: the brightness is the shape's coverage.
        coverage = fixed[i]["video"].mean(dim=0) * 0.5 + 0.5  # (T, H, W)
        ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        dx, dy = fixed.velocity(i)
        assert coverage.sum(dim=(1, 2)).std() < 1e-4  # the same area in every frame
        # The coverage's circular mean moves by the clip's velocity between frames.
        def centre(frame: torch.Tensor) -> torch.Tensor:
            angle = 2 * math.pi / 16
            cx = torch.atan2((frame * torch.sin(xs * angle)).sum(), (frame * torch.cos(xs * angle)).sum())
            cy = torch.atan2((frame * torch.sin(ys * angle)).sum(), (frame * torch.cos(ys * angle)).sum())
            return torch.stack([cx, cy]) / angle
        step = centre(coverage[1]) - centre(coverage[0])
        step = (step + 8) % 16 - 8
        assert step.tolist() == pytest.approx([dx, dy], abs=0.05)


def test_random_clip_gives_fresh_content_with_the_same_label_and_fps() -> None:
    ds = SyntheticMotion(size=16, frames=2, random_clip=True)
    torch.manual_seed(0)
    first, second = ds[3], ds[3]
    assert not torch.equal(first["video"], second["video"])
    assert (first["label"], first["fps"]) == (second["label"], second["fps"]) == (3, 4.0)
    torch.manual_seed(0)
    assert torch.equal(ds[3]["video"], first["video"])


def test_recipe_nodes_of_the_quickstart_validate() -> None:
    train = ComponentSpec.model_validate({"name": "synthetic_motion", "size": 32, "num_clips": 512})
    val = ComponentSpec.model_validate({"name": "synthetic_motion", "seed": 1, "random_clip": False})
    assert train.resolve("dataset").size == 32
    assert val.resolve("dataset").seed == 1
    assert len(train.build("dataset")) == 512

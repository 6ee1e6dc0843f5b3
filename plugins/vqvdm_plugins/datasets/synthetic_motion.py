"""A built-in data set of shapes gliding across a plain background: class = direction of motion.

It needs no files and is deterministic: clip ``i`` is drawn from a ``torch.Generator`` seeded with
``seed * 1_000_003 + i``, so the same config gives the same clips in every process and worker.

* label ``c = i % num_classes`` (balanced); direction ``theta_c = 2 pi c / num_classes``, counted
  counter-clockwise from +x in image coordinates where +y points DOWN, so with 4 classes:
  0 right, 1 up (dy < 0), 2 left, 3 down;
* ``fps = fps_values[(i // num_classes) % len(fps_values)]``;
* every shape moves ``d = speed * size / fps`` pixels per frame along ``(cos theta, -sin theta)``:
  ``speed`` is in frame sizes per *second*, so one motion looks the same at every FPS and the
  FPS condition decides how far things move between frames;
* a random uniform background and ``num_shapes`` filled squares or discs (colours clearly apart
  from the background) all move rigidly with the same velocity and wrap around the edges (a
  torus), so nothing leaves the frame. Positions are sub-pixel: each shape's coverage of a pixel
  is measured on a 4x finer grid and the shape is blended in by it, so motion is smooth.

Colours are random per clip by default. ``background_colour`` and ``shape_colour`` fix them for
every clip: then a generator has only geometry and motion to learn, not a colour pair per clip
(the quickstart uses this; docs/results.md measures how much sooner a small denoiser draws
objects on such data).

The random draws, in order: background RGB (3, unless fixed), then per shape: kind (1), RGB (3,
redrawn until far enough from the background; none when fixed), centre x and y (2).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from einops import reduce
from pydantic import Field, model_validator
from torch import Tensor

from vqvdm_core.interfaces import VideoDataset
from vqvdm_core.interfaces.configurable import ComponentConfig

__all__ = ["SyntheticMotion", "direction_names"]

SUPERSAMPLE = 4
"""Each pixel is the mean of SUPERSAMPLE x SUPERSAMPLE samples (anti-aliasing)."""

MIN_COLOUR_DISTANCE = 0.4
"""Least RGB distance (channels in [0, 1]) between a shape and the background."""


Colour = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)],
               Annotated[float, Field(ge=0, le=1)]]
"""An RGB triple, each channel in [0, 1]."""


def direction_names(num_classes: int) -> list[str]:
    """``["right", "up", "left", "down"]`` for 4 classes, ``["dir0", "dir1", ...]`` otherwise."""
    if num_classes == 4:
        return ["right", "up", "left", "down"]
    return [f"dir{k}" for k in range(num_classes)]


class SyntheticMotion(VideoDataset):
    """Shapes moving in one of num_classes directions on a plain background; no files needed."""

    class Config(ComponentConfig):
        num_clips: int = Field(1024, ge=1, description="number of clips (the data set's length)")
        frames: int = Field(16, ge=1, description="frames T per clip")
        size: int = Field(64, ge=4, description="frames are size x size pixels")
        num_classes: int = Field(4, ge=2, description="motion directions, evenly spaced on the circle")
        fps_values: list[Annotated[float, Field(gt=0)]] = Field(
            default_factory=lambda: [4.0, 8.0, 16.0], min_length=1,
            description="frame rates, cycled over clips; the per-frame step is speed * size / fps")
        speed: float = Field(0.25, ge=0, description="displacement in frame sizes per second")
        num_shapes: int = Field(2, ge=1, description="shapes per clip, all moving together")
        shape_size: float = Field(0.25, gt=0, le=1,
                                  description="square side / disc diameter as a fraction of size")
        background_colour: Colour | None = Field(
            None, description="RGB in [0, 1] of every clip's background; unset: random per clip")
        shape_colour: Colour | None = Field(
            None, description="RGB in [0, 1] of every shape; unset: random per shape, at least "
            f"{MIN_COLOUR_DISTANCE} from the background")
        seed: int = Field(0, description="clip i comes from a generator seeded with seed * 1_000_003 + i")
        random_clip: bool = Field(
            False,
            description="true: every access draws fresh content (label and fps still follow the "
                        "index) from the global torch generator, an endless training stream; "
                        "false: clip i is always the same",
        )

        @model_validator(mode="after")
        def _colours_apart(self) -> "SyntheticMotion.Config":
            if self.background_colour is not None and self.shape_colour is not None:
                distance = math.dist(self.background_colour, self.shape_colour)
                if distance < MIN_COLOUR_DISTANCE:
                    raise ValueError(
                        f"shape_colour {list(self.shape_colour)} is only {distance:.2f} from background_colour "
                        f"{list(self.background_colour)}; keep them at least {MIN_COLOUR_DISTANCE} apart "
                        "(RGB in [0, 1]) so that the shapes stay visible")
            return self

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.config.frames, self.config.size, self.config.size)

    @classmethod
    def clip_shape_of(cls, config: Any) -> tuple[int, int, int]:
        c = cls.resolve_config(config, {})
        return (c.frames, c.size, c.size)

    @classmethod
    def num_classes_of(cls, config: Any) -> int:
        return int(cls.resolve_config(config, {}).num_classes)

    @property
    def class_names(self) -> list[str]:
        return direction_names(self.config.num_classes)

    def __len__(self) -> int:
        return self.config.num_clips

    def label(self, index: int) -> int:
        """Class of clip ``index``."""
        return index % self.config.num_classes

    def fps(self, index: int) -> float:
        """Frame rate of clip ``index``."""
        values = self.config.fps_values
        return float(values[(index // self.config.num_classes) % len(values)])

    def velocity(self, index: int) -> tuple[float, float]:
        """``(dx, dy)`` in pixels per frame of clip ``index`` (+y points down)."""
        c = self.config
        theta = 2 * math.pi * self.label(index) / c.num_classes
        step = c.speed * c.size / self.fps(index)
        return step * math.cos(theta), -step * math.sin(theta)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} clips")
        generator = torch.Generator()
        if self.config.random_clip:
            generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
        else:
            generator.manual_seed(self.config.seed * 1_000_003 + index)
        video = self.render(generator, self.velocity(index))
        return {"video": video, "fps": self.fps(index), "label": self.label(index)}

    def render(self, generator: torch.Generator, velocity: tuple[float, float]) -> Tensor:
        """Draw one clip ``(3, T, size, size)`` in [-1, 1]; the scene is drawn from ``generator``."""
        c = self.config
        if c.background_colour is None:
            background = torch.rand(3, generator=generator)
        else:
            background = torch.tensor(c.background_colour, dtype=torch.float32)
        fine = c.size * SUPERSAMPLE
        # Sample positions in pixel units, at the centres of the fine grid's cells.
        coords = (torch.arange(fine, dtype=torch.float32) + 0.5) / SUPERSAMPLE  # (fine,)
        times = torch.arange(c.frames, dtype=torch.float32)  # (T,)
        video = background[:, None, None, None].expand(3, c.frames, c.size, c.size).clone()
        radius = c.shape_size * c.size / 2
        for _ in range(c.num_shapes):
            is_disc = bool(torch.rand(1, generator=generator) < 0.5)
            if c.shape_colour is None:
                colour = _distinct_colour(background, generator)
            else:
                colour = torch.tensor(c.shape_colour, dtype=torch.float32)
            x0, y0 = (torch.rand(2, generator=generator) * c.size).tolist()
            dx = _wrapped(coords[None, :] - (x0 + velocity[0] * times)[:, None], c.size)  # (T, fine)
            dy = _wrapped(coords[None, :] - (y0 + velocity[1] * times)[:, None], c.size)  # (T, fine)
            coverage = _disc_coverage(dx, dy, radius) if is_disc else _square_coverage(dx, dy, radius)
            # Later shapes are painted over earlier ones, blended by their pixel coverage.
            video = torch.lerp(video, colour[:, None, None, None].expand_as(video), coverage[None])
        return (video * 2 - 1).clamp(-1, 1)


def _pool(fine: Tensor) -> Tensor:
    """Average SUPERSAMPLE consecutive samples of the last axis: ``(..., fine) -> (..., size)``."""
    return reduce(fine, "... (n a) -> ... n", "mean", a=SUPERSAMPLE)


def _square_coverage(dx: Tensor, dy: Tensor, half: float) -> Tensor:
    """Fraction ``(T, size, size)`` of each pixel inside an axis-aligned square of half side ``half``.

    The square's indicator is a product of an x and a y interval, so its supersampled coverage is
    the outer product of the two pooled 1-D coverages (exactly).
    """
    cover_x = _pool((dx.abs() <= half).float())  # (T, W)
    cover_y = _pool((dy.abs() <= half).float())  # (T, H)
    return cover_y[:, :, None] * cover_x[:, None, :]


def _disc_coverage(dx: Tensor, dy: Tensor, radius: float) -> Tensor:
    """Fraction ``(T, size, size)`` of each pixel inside a disc of ``radius``, from the fine grid."""
    inside = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= radius * radius).float()  # (T, fine, fine)
    return F.avg_pool2d(inside, SUPERSAMPLE)  # (T, fine, fine) -> (T, size, size)


def _wrapped(offset: Tensor, period: float) -> Tensor:
    """Offsets on a circle of ``period``: mapped to ``[-period / 2, period / 2)``."""
    return torch.remainder(offset + period / 2, period) - period / 2


def _distinct_colour(background: Tensor, generator: torch.Generator) -> Tensor:
    """A random RGB at least :data:`MIN_COLOUR_DISTANCE` from ``background``."""
    for _ in range(64):
        colour = torch.rand(3, generator=generator)
        if torch.linalg.vector_norm(colour - background) >= MIN_COLOUR_DISTANCE:
            return colour
    return (background < 0.5).float()  # the farthest cube corner, should 64 draws all fall close

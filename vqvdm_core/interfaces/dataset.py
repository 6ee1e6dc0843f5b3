"""The dataset interface: a map-style dataset of clips (see the batch conventions in :mod:`vqvdm_core.interfaces`)."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from vqvdm_core.interfaces.configurable import Configurable

__all__ = ["NO_LABEL", "VideoDataset"]

NO_LABEL = -1
"""Label value of a clip that has no class (unlabelled data, or the unconditional branch)."""


class VideoDataset(Configurable, torch.utils.data.Dataset, abc.ABC):
    """A map-style dataset of clips.

    ``dataset[i]`` is ``{"video": (3, T, H, W) float in [-1, 1], "fps": float, "label": int}``
    with ``label == NO_LABEL`` for unlabelled data, plus any other per-clip number a conditioner
    reads (``"motion": float``...): the latent cache keeps every such field.
    """

    kind: ClassVar[str] = "dataset"

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @property
    @abc.abstractmethod
    def clip_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of every clip this dataset yields."""

    @classmethod
    def clip_shape_of(cls, config: Any) -> tuple[int, int, int] | None:
        """:attr:`clip_shape` of a dataset built from ``config``, told from the config alone (no
        file opened), or None (the default) when only a built dataset can tell: callers such as
        ``vqvdm bench`` then build it."""
        return None

    @classmethod
    def num_classes_of(cls, config: Any) -> int | None:
        """:attr:`num_classes` of a dataset built from ``config``, from the config alone, or None
        (the default) when only a built dataset (e.g. one reading split files) can tell."""
        return None

    @property
    def class_names(self) -> list[str] | None:
        """Class names by index, or None for unlabelled data."""
        return None

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out because they were corrupt, unreadable or too short: path -> reason."""
        return {}

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabelled data)."""
        names = self.class_names
        return len(names) if names else 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

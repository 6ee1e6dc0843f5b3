"""Classes the registry must refuse, one per rule of the component contract."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict

from vqvdm_core.interfaces import NoiseSchedule
from vqvdm_core.interfaces.configurable import ComponentConfig
from fake_plugins.components import TinySchedule


class NotASchedule:
    """Has a Config and the methods, but does not subclass NoiseSchedule."""

    class Config(ComponentConfig):
        pass


class HalfSchedule(NoiseSchedule):
    """Subclasses NoiseSchedule but implements only some of its abstract methods."""

    class Config(ComponentConfig):
        pass

    @property
    def num_train_steps(self) -> int:
        return 10


class DataclassConfigSchedule(TinySchedule):
    """A complete schedule whose Config is a dataclass, not a pydantic model."""

    @dataclass
    class Config:  # type: ignore[no-redef]
        num_train_steps: int = 10


class OpenConfigSchedule(TinySchedule):
    """A complete schedule whose Config silently accepts unknown fields."""

    class Config(TinySchedule.Config):
        model_config = ConfigDict(extra="allow")

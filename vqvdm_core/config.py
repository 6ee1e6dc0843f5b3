"""The configuration base every component's nested ``Config`` derives from.

A component is built from one validated pydantic model, so a recipe node, a Python call and the
resolved recipe written beside a run all describe the same object::

    tok = VQGAN3D(VQGAN3D.Config(channels=64))   # explicit
    tok = VQGAN3D(channels=64)                   # the same: keywords are validated into a Config
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict


FilePurpose = Literal["train", "use"]
"""What a component's files are needed for: ``"train"`` (training it) or ``"use"`` (anything else:
encoding, sampling, scoring, reading data)."""


class ComponentConfig(BaseModel):
    """Hyper-parameters of one component. Unknown fields are an error, never silently ignored, and
    so are non-finite numbers (``nan``, ``inf``): no hyper-parameter means them."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, allow_inf_nan=False)


class Configurable:
    """Mixin giving a component its ``Config`` and the ``config`` it was built from.

    Subclasses declare ``class Config(ComponentConfig): ...`` and call
    ``self.config = self.resolve_config(config, overrides)`` first thing in ``__init__``.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    config: ComponentConfig

    @classmethod
    def resolve_config(cls, config: ComponentConfig | None, overrides: dict[str, Any]) -> Any:
        """Return a validated ``cls.Config`` from an optional config object and keyword overrides."""
        if config is None:
            return cls.Config(**overrides)
        if not isinstance(config, cls.Config):
            # A config of a parent class or a plain mapping: re-validate against ours.
            data = config.model_dump() if isinstance(config, BaseModel) else dict(config)
            return cls.Config(**{**data, **overrides})
        if overrides:
            return cls.Config(**{**config.model_dump(), **overrides})
        return config

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The files and folders this component, built from ``config``, needs for ``purpose`` and
        would not find: one message each, saying what is missing, where it was looked for and how to
        get it ([] when everything is there). It only looks, never loads: ``vqvdm validate
        --check-data`` and the start of ``vqvdm run`` call it so that a missing weight file or data
        folder is reported in a second, not when the stage that needs it starts."""
        return []

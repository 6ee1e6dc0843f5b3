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


_NOT_GIVEN: Any = object()
"""``Configurable.__init__`` called with no config at all (not even ``None``)."""


class Configurable:
    """Mixin giving a component its ``Config`` and the ``config`` it was built from.

    Subclasses declare ``class Config(ComponentConfig): ...``; the constructor is this one:
    ``Cls(Cls.Config(...))``, ``Cls(**fields)`` and ``registry.create(kind, name, **fields)`` all
    leave the validated ``self.config``. A component with more to build defines
    ``__init__(self, config=None, **overrides)`` starting with ``super().__init__(config,
    **overrides)`` and then reads ``self.config``. For ``nn.Module`` kinds ``nn.Module.__init__``
    runs (through ``super()``) before ``config`` is set; ``Configurable`` comes first in the bases.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    config: ComponentConfig

    def __init__(self, config: Any = _NOT_GIVEN, **overrides: Any) -> None:
        super().__init__()  # the next base: nn.Module.__init__ for module kinds, else object's
        if config is _NOT_GIVEN and not overrides and type(self).__init__ is not Configurable.__init__:
            # ``super().__init__()`` without arguments from a component's own ``__init__``: the
            # form written before this constructor existed, which sets ``self.config`` itself
            # next. Its defaults may not validate (a required field): leave that to it.
            try:
                self.config = self.resolve_config(None, {})
            except ValueError:
                pass
            return
        self.config = self.resolve_config(None if config is _NOT_GIVEN else config, overrides)

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

"""The component registry: entry-point discovery, lazy listing, broken and duplicate plug-ins,
interface checks, in-process registration and building components."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from fake_plugins.distributions import entry_points_from
from fake_plugins.components import MeanAbs, TinyDenoiser, TinySchedule
from fake_plugins.misfits import (
    DataclassConfigSchedule,
    HalfSchedule,
    NotASchedule,
    OpenConfigSchedule,
)

from vqvdm_core.errors import ComponentError, UserError
from vqvdm_core.registry import GROUPS, KINDS, Registry, conformance_problem, static_problem

REPO = Path(__file__).resolve().parents[2]
SCHEDULES = GROUPS["schedule"]


def ep(name: str, value: str, kind: str = "schedule") -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=GROUPS[kind])


def registry_of(*points: metadata.EntryPoint) -> Registry:
    """A registry that sees exactly ``points`` (and no installed distribution)."""
    return Registry(entry_points=lambda group: [p for p in points if p.group == group])


# -- discovery -------------------------------------------------------------------------------


def test_entry_points_are_listed_per_kind_with_distribution_and_version(make_distribution):
    site = make_distribution("acme-video", "1.2.3", {
        SCHEDULES: {"tiny": "fake_plugins.components:TinySchedule"},
        GROUPS["metric"]: {"mean_abs": "fake_plugins.components:MeanAbs"},
    })
    reg = Registry(entry_points=entry_points_from(site))
    [sched] = reg.entries("schedule")
    assert (sched.kind, sched.name, sched.distribution, sched.version) == ("schedule", "tiny", "acme-video", "1.2.3")
    assert sched.target == "fake_plugins.components:TinySchedule"
    assert [e.name for e in reg.entries("metric")] == ["mean_abs"]
    assert reg.names("denoiser") == []
    assert [(e.kind, e.name) for e in reg.entries()] == [("schedule", "tiny"), ("metric", "mean_abs")]


def test_listing_imports_no_plugin_module_until_the_component_is_used(monkeypatch):
    monkeypatch.delitem(sys.modules, "fake_plugins.lazy", raising=False)
    reg = registry_of(ep("lazy", "fake_plugins.lazy:LazySchedule"))
    [entry] = reg.entries("schedule")
    assert entry.status == "available"
    # The one-line summary comes from parsing the source, not from importing it.
    assert entry.summary() == "Schedule whose module must stay unimported while the registry only lists it."
    assert "fake_plugins.lazy" not in sys.modules

    cls = reg.load("schedule", "lazy")
    assert "fake_plugins.lazy" in sys.modules
    assert cls is sys.modules["fake_plugins.lazy"].LazySchedule
    assert entry.status == "loaded"
    assert reg.load("schedule", "lazy") is cls


def test_listing_the_installed_components_imports_neither_torch_nor_any_plugin():
    code = (
        "import sys, json\n"
        "from vqvdm_core.registry import Registry\n"
        "entries = Registry().entries()\n"
        "summaries = [e.summary() for e in entries]\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('vqvdm_plugins'))\n"
        "print(json.dumps({'n': len(entries), 'heavy': heavy}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] > 0
    assert result["heavy"] == []


def test_installed_vqvdm_distribution_provides_every_default_plugin_it_declares():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    reg = Registry()  # the real entry points of this environment
    assert set(declared) == set(GROUPS.values())
    for kind, group in GROUPS.items():
        ours = {e.name: e.target for e in reg.entries(kind) if e.distribution == "vqvdm"}
        assert ours == declared[group], kind
    ddpm = reg.entry("schedule", "ddpm")
    assert ddpm.distribution == "vqvdm" and ddpm.target == "vqvdm_plugins.schedules.ddpm:DDPMSchedule"


def test_the_same_distribution_seen_twice_on_the_path_is_not_a_duplicate():
    point = ep("tiny", "fake_plugins.components:TinySchedule")
    reg = Registry(entry_points=lambda group: [point, point] if group == SCHEDULES else [])
    assert reg.load("schedule", "tiny") is TinySchedule


# -- broken and duplicate plug-ins -----------------------------------------------------------


def test_broken_plugin_is_listed_with_its_error_and_the_others_still_load():
    reg = registry_of(
        ep("broken", "fake_plugins.broken:NeverDefined"),
        ep("tiny", "fake_plugins.components:TinySchedule"),
    )
    entries = {e.name: e for e in reg.try_load_all("schedule")}
    assert entries["broken"].status == "broken"
    assert "ImportError" in entries["broken"].error and "libfoo" in entries["broken"].error
    assert entries["tiny"].status == "loaded" and entries["tiny"].obj is TinySchedule

    with pytest.raises(ComponentError, match=r"schedule 'broken' from .* is broken: ImportError.*libfoo"):
        reg.load("schedule", "broken")
    assert reg.create("schedule", "tiny", num_train_steps=5).num_train_steps == 5


def test_a_module_that_does_not_exist_is_reported_without_importing_anything(tmp_path, monkeypatch):
    assert static_problem("fake_plugins.no_such_module:X") == "module 'fake_plugins.no_such_module' not found"
    assert static_problem("no_such_top_level_package_xyz.mod:X") is not None
    # A syntax error is found by parsing, not by executing the module.
    pkg = tmp_path / "syntax_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("class Oops(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = static_problem("syntax_pkg.bad:Oops")
    assert problem is not None and problem.startswith("SyntaxError in ") and "bad.py:1" in problem
    assert "syntax_pkg.bad" not in sys.modules


def test_a_module_inside_a_namespace_package_is_not_reported_missing(tmp_path, monkeypatch):
    # Packages without __init__.py import fine; the static check must agree with the import system.
    (tmp_path / "ns_top" / "inner").mkdir(parents=True)
    (tmp_path / "ns_top" / "inner" / "thing.py").write_text(
        'class Thing:\n    """A thing in a namespace package."""\n\n    class Nested:\n        """Inner."""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert static_problem("ns_top.inner.thing:Thing") is None
    entry = registry_of(ep("thing", "ns_top.inner.thing:Thing")).entry("schedule", "thing")
    assert entry.summary() == "A thing in a namespace package."
    assert registry_of(ep("n", "ns_top.inner.thing:Thing.Nested")).entry("schedule", "n").summary() == "Inner."
    assert static_problem("ns_top.inner.missing:Thing") == "module 'ns_top.inner.missing' not found"


def test_duplicate_names_are_refused_naming_both_providers(make_distribution):
    make_distribution("acme-schedules", "1.0", {SCHEDULES: {"ddpm": "fake_plugins.components:TinySchedule"}})
    site = make_distribution("other-schedules", "2.0", {SCHEDULES: {"ddpm": "fake_plugins.lazy:LazySchedule"}})
    reg = Registry(entry_points=entry_points_from(site))
    [entry] = reg.entries("schedule")
    assert entry.status == "duplicate"
    with pytest.raises(ComponentError) as info:
        reg.load("schedule", "ddpm")
    message = str(info.value)
    assert "provided twice" in message
    assert "acme-schedules (fake_plugins.components:TinySchedule)" in message
    assert "other-schedules (fake_plugins.lazy:LazySchedule)" in message


# -- unknown names ---------------------------------------------------------------------------


def test_unknown_name_suggests_the_nearest_and_lists_what_exists():
    reg = registry_of(ep("vqgan3d", "fake_plugins.components:TinyTokenizer", "tokenizer"),
                      ep("identity", "fake_plugins.components:TinyTokenizer", "tokenizer"))
    with pytest.raises(ComponentError) as info:
        reg.entry("tokenizer", "vqgan")
    message = str(info.value)
    assert "unknown tokenizer 'vqgan'" in message
    assert "Did you mean 'vqgan3d'?" in message
    assert "Available tokenizers: identity, vqgan3d" in message
    with pytest.raises(ComponentError) as info:
        reg.create("tokenizer", "zzz")
    assert "Did you mean" not in str(info.value) and "identity, vqgan3d" in str(info.value)


def test_unknown_kind_is_refused_listing_the_kinds():
    with pytest.raises(ComponentError, match="unknown component kind 'schedules'; kinds are: tokenizer, denoiser"):
        registry_of().entries("schedules")
    assert isinstance(ComponentError("x"), UserError)
    assert KINDS == tuple(GROUPS)


# -- interface checks ------------------------------------------------------------------------


@pytest.mark.parametrize("cls, fragments", [
    (NotASchedule, ["fake_plugins.misfits.NotASchedule", "does not implement the NoiseSchedule interface"]),
    (HalfSchedule, ["fake_plugins.misfits.HalfSchedule", "unimplemented", "add_noise", "sample"]),
    (DataclassConfigSchedule, ["fake_plugins.misfits.DataclassConfigSchedule", "no nested pydantic Config"]),
    (OpenConfigSchedule, ["fake_plugins.misfits.OpenConfigSchedule.Config", "extra='forbid'"]),
])
def test_a_class_breaking_the_component_contract_is_refused_naming_the_class(cls, fragments):
    problem = conformance_problem("schedule", cls)
    assert problem is not None
    for fragment in fragments:
        assert fragment in problem

    # The same refusal through an entry point (recorded on the entry) and through register().
    reg = registry_of(ep("misfit", f"{cls.__module__}:{cls.__qualname__}"))
    with pytest.raises(ComponentError, match="schedule 'misfit' .* is refused"):
        reg.load("schedule", "misfit")
    assert reg.entry("schedule", "misfit").status == "broken"
    assert reg.entry("schedule", "misfit").error == problem
    with pytest.raises(ComponentError, match=f"cannot register schedule 'misfit2'.*{cls.__name__}"):
        reg.register("schedule", "misfit2", cls)


def test_a_conforming_class_of_another_kind_is_refused():
    problem = conformance_problem("denoiser", TinySchedule)
    assert problem is not None and "does not implement the Denoiser interface" in problem
    assert conformance_problem("schedule", TinySchedule) is None
    assert "is not a class" in conformance_problem("schedule", TinySchedule())


# -- in-process registration -----------------------------------------------------------------


def test_register_adds_an_in_process_class_that_builds_like_any_other():
    reg = registry_of()
    assert reg.register("metric", "mean_abs", MeanAbs) is MeanAbs
    entry = reg.entry("metric", "mean_abs")
    assert entry.distribution == "<register>"
    assert entry.target == "fake_plugins.components:MeanAbs"
    assert entry.status == "loaded"
    metric = reg.create("metric", "mean_abs", reduce="max")
    assert isinstance(metric, MeanAbs) and metric.config.reduce == "max"


def test_register_works_as_a_decorator():
    reg = registry_of()

    @reg.register("schedule", "short")
    class Short(TinySchedule):
        """Ten steps."""

    assert reg.load("schedule", "short") is Short
    assert reg.entry("schedule", "short").target.endswith(":test_register_works_as_a_decorator.<locals>.Short")


def test_register_refuses_a_taken_name_naming_its_provider_unless_replacing(make_distribution):
    site = make_distribution("acme-schedules", "1.0", {SCHEDULES: {"tiny": "fake_plugins.components:TinySchedule"}})
    reg = Registry(entry_points=entry_points_from(site))
    with pytest.raises(ComponentError) as info:
        reg.register("schedule", "tiny", TinySchedule)
    message = str(info.value)
    assert "already provided by acme-schedules (fake_plugins.components:TinySchedule)" in message
    assert "replace=True" in message

    reg.register("schedule", "mine", TinySchedule)
    with pytest.raises(ComponentError, match=r"already provided by <register> \(fake_plugins.components:TinySchedule\)"):
        reg.register("schedule", "mine", TinySchedule)

    class Replacement(TinySchedule):
        """A replacement."""

    reg.register("schedule", "tiny", Replacement, replace=True)
    assert reg.load("schedule", "tiny") is Replacement
    reg.unregister("schedule", "tiny")
    assert "tiny" not in reg.names("schedule")
    reg.refresh()  # forgets registrations and reads the entry points again
    assert reg.names("schedule") == ["tiny"] and reg.entry("schedule", "tiny").distribution == "acme-schedules"


# -- building --------------------------------------------------------------------------------


def test_create_with_an_invalid_config_names_the_component_and_the_field():
    reg = registry_of(ep("tiny", "fake_plugins.components:TinyDenoiser", "denoiser"))
    with pytest.raises(ComponentError) as info:
        reg.create("denoiser", "tiny", in_channels=4, attention_heads=0)
    message = str(info.value)
    assert "denoiser 'tiny': invalid config" in message and "attention_heads" in message
    with pytest.raises(ComponentError, match="attention_head\n.*Extra inputs are not permitted"):
        reg.create("denoiser", "tiny", in_channels=4, attention_head=2)

    denoiser = reg.create("denoiser", "tiny", in_channels=4, emb_dim=6)
    assert isinstance(denoiser, TinyDenoiser)
    assert (denoiser.config.in_channels, denoiser.config.emb_dim, denoiser.config.attention_heads) == (4, 6, 2)


def test_a_wired_field_left_unset_fails_naming_the_field():
    reg = registry_of(ep("tiny", "fake_plugins.components:TinyDenoiser", "denoiser"))
    with pytest.raises(ComponentError, match="set in_channels"):
        reg.create("denoiser", "tiny")


# -- the Configurable constructor ----------------------------------------------------------------


def test_configurable_constructor_validates_every_form_and_initialises_modules_first():
    import torch
    from pydantic import Field, ValidationError

    from vqvdm_core.interfaces.configurable import ComponentConfig, Configurable

    class Plain(Configurable, torch.nn.Module):  # no __init__ of its own
        class Config(ComponentConfig):
            width: int = Field(2, ge=1)

    class Built(Configurable, torch.nn.Module):
        class Config(ComponentConfig):
            width: int = Field(..., ge=1)

        def __init__(self, config=None, **overrides):
            super().__init__(config, **overrides)
            self.layer = torch.nn.Linear(self.config.width, 1)  # nn.Module.__init__ has run

    class Older(Configurable, torch.nn.Module):  # the form written before the shared constructor
        class Config(ComponentConfig):
            width: int = Field(..., ge=1)

        def __init__(self, config=None, **overrides):
            super().__init__()
            self.config = self.resolve_config(config, overrides)

    for cls in (Plain, Built, Older):
        assert cls(cls.Config(width=3)).config.width == 3
        assert cls(width=4).config.width == 4
        assert cls(cls.Config(width=3), width=5).config.width == 5
    assert Plain().config.width == 2
    assert dict(Built(width=3).named_parameters()).keys() == {"layer.weight", "layer.bias"}
    for cls in (Plain, Built, Older):
        with pytest.raises(ValidationError):
            cls(width=0)
    for cls in (Built, Older):  # a required field stays required
        with pytest.raises(ValidationError):
            cls()

"""``docs/recipes.md`` is generated from the pydantic models and must match them."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from vqvdm_core import recipe as r
from vqvdm_core.recipe.docs import SECTIONS, _type_text, render
from vqvdm_core.registry import REGISTRY

DOCS = Path(__file__).parents[2] / "docs" / "recipes.md"
REGENERATE = "python -m vqvdm_core.recipe.docs > docs/recipes.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return render()


def test_docs_recipes_md_is_current(rendered):
    assert DOCS.is_file(), f"docs/recipes.md is missing; generate it with `{REGENERATE}`"
    if DOCS.read_text() != rendered:
        pytest.fail(f"docs/recipes.md differs from the recipe and component Configs; "
                    f"regenerate it with `{REGENERATE}`", pytrace=False)


def _section(text: str, anchor: str) -> str:
    """The text from ``<a id="anchor">`` to the next anchor."""
    start = text.index(f'<a id="{anchor}"></a>')
    following = text.find('<a id="', start + 1)
    return text[start:following if following != -1 else len(text)]


def test_every_recipe_field_is_documented_in_its_section(rendered):
    for _, anchor, model in SECTIONS:
        section = _section(rendered, anchor)
        for name in model.model_fields:
            assert f"| `{name}` |" in section, f"{model.__name__}.{name} missing from section {anchor}"


def test_every_shipped_component_has_a_section_with_its_fields(rendered):
    shipped = [e for e in REGISTRY.try_load_all() if e.distribution == "vqvdm"]
    assert {(e.kind, e.name) for e in shipped} >= {("tokenizer", "vqgan3d"), ("denoiser", "unet3d"),
                                                   ("metric", "fvd"), ("dataset", "ucf101")}
    for entry in shipped:
        section = _section(rendered, f"{entry.kind}-{entry.name}")
        assert f"### {entry.kind} `{entry.name}`" in section
        for name in entry.obj.Config.model_fields:
            assert f"| `{name}` |" in section, f"{entry.kind} {entry.name}: field {name} missing"


def test_types_read_as_a_recipe_author_writes_them():
    assert _type_text(int | None) == "int | null"
    assert _type_text(typing.Optional[str]) == "str | null"
    assert _type_text(typing.Literal["fp32", "bf16"]) == '"fp32" | "bf16"'
    assert _type_text(tuple[int, ...]) == "list of int"  # YAML has lists, not tuples
    assert _type_text(tuple[float, float]) == "[float, float]"
    assert _type_text(tuple[float, float, float]) == "[float] × 3"
    assert _type_text(list[typing.Literal["mp4", "gif"]]) == 'list of ("mp4" | "gif")'
    assert _type_text(float | typing.Literal["auto"]) == 'float | "auto"'
    assert _type_text(r.OptimizerSettings) == "[OptimizerSettings](#optimizer)"


def test_constraints_and_links_appear_in_the_tables(rendered):
    stage = _section(rendered, "train-stage")
    assert re.search(r"\| `batch_size` \| int ≥ 1 \| `8` \|", stage)
    assert re.search(r"\| `ema_decay` \| float > 0, < 1 \\\| null \| `null` \|", stage)
    top = _section(rendered, "top-level")
    assert "| `tokenizer` | [tokenizer node](#kind-tokenizer) | **required** |" in top
    assert "| `guidance` | [guidance node](#kind-guidance) \\| null | `null` |" in top


def test_wired_fields_say_where_they_come_from(rendered):
    unet = _section(rendered, "denoiser-unet3d")
    row = next(line for line in unet.splitlines() if line.startswith("| `in_channels` |"))
    assert "*wired*: the tokenizer's latent_channels" in row
    klass = _section(rendered, "conditioner-class")
    assert any("*wired*: the data set's number of classes" in line
               for line in klass.splitlines() if line.startswith("| `num_classes` |"))

"""Recipes: two-phase validation with paths and lines, overrides, dumping, saving and hashing.

Every test uses tiny components registered on a fresh :class:`Registry` (the process-wide one is
never touched), so recipes validate without the default plug-ins.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import yaml
from fake_plugins.components import ALL, TinyDenoiser, TinyLabel, TinySchedule

from vqvdm_core.errors import RecipeError, UserError
from vqvdm_core.recipe import ComponentSpec, Recipe, apply_override, load_recipe, save_recipe
from vqvdm_core.registry import REGISTRY, Registry


@pytest.fixture
def registry() -> Registry:
    reg = Registry(entry_points=lambda group: [])
    for (kind, name), cls in ALL.items():
        reg.register(kind, name, cls)
    return reg


def minimal() -> dict:
    return {
        "name": "tiny",
        "data": {"train": {"name": "tiny_clips"}},
        "tokenizer": {"name": "tiny_tokenizer"},
        "denoiser": {"name": "tiny_denoiser"},
        "schedule": {"name": "tiny_schedule"},
    }


RECIPE_YAML = textwrap.dedent("""\
    name: tiny
    data:
      train:
        name: tiny_clips
        frames: 4
    tokenizer: tiny_tokenizer
    denoiser:
      name: tiny_denoiser
      attention_heads: 2
      emb_dim: 8
    schedule: {name: tiny_schedule, num_train_steps: 20}
    conditioners:
      - name: tiny_label
        dropout: 0.2
      - tiny_label
    guidance: {name: tiny_cfg, scale: 2.0}
    evaluate:
      metrics: [mean_abs]
    """)


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(exc: pytest.ExceptionInfo[RecipeError]) -> dict[str, str]:
    return dict(exc.value.problems)


# -- valid recipes ---------------------------------------------------------------------------


def test_minimal_recipe_validates_and_fills_every_default(registry):
    recipe = load_recipe(minimal(), registry=registry)
    assert isinstance(recipe.denoiser.config, TinyDenoiser.Config)
    assert recipe.denoiser.config.attention_heads == 2 and recipe.denoiser.config.in_channels is None
    assert recipe.schedule.config == TinySchedule.Config()
    assert recipe.guidance is None  # the default: no guidance, naming no plug-in
    assert recipe.stages == ["tokenizer", "latents", "denoiser", "sample", "evaluate"]
    assert recipe.train.denoiser.optimizer.lr == 1e-4
    assert [(p, k, s.name) for p, k, s in recipe.components()] == [
        ("data.train", "dataset", "tiny_clips"), ("tokenizer", "tokenizer", "tiny_tokenizer"),
        ("denoiser", "denoiser", "tiny_denoiser"), ("schedule", "schedule", "tiny_schedule"),
    ]
    # The global registry was not used, and was not changed.
    assert "tiny_denoiser" not in REGISTRY.names("denoiser")


def test_a_recipe_file_with_bare_string_nodes_validates(tmp_path, registry):
    path = write(tmp_path, RECIPE_YAML)
    recipe = load_recipe(path, registry=registry)
    assert recipe.source == str(path)
    assert recipe.tokenizer.name == "tiny_tokenizer" and recipe.tokenizer.options == {}
    assert recipe.tokenizer.config.factor == 2
    assert [c.config.dropout for c in recipe.conditioners] == [0.2, 0.1]
    assert recipe.evaluate.metrics[0].name == "mean_abs"
    assert recipe.schedule.config.num_train_steps == 20
    assert [p for p, _, _ in recipe.components()][-3:] == ["conditioners.1", "guidance", "evaluate.metrics.0"]


def test_build_fills_wired_fields_only_where_the_recipe_left_them_unset(registry):
    recipe = load_recipe(minimal(), registry=registry)
    denoiser = recipe.denoiser.build("denoiser", registry, in_channels=3)
    assert isinstance(denoiser, TinyDenoiser) and denoiser.config.in_channels == 3

    data = minimal()
    data["denoiser"]["in_channels"] = 5
    data["conditioners"] = ["tiny_label"]
    recipe = load_recipe(data, registry=registry)
    assert recipe.denoiser.build("denoiser", registry, in_channels=3).config.in_channels == 5
    label = recipe.conditioners[0].build("conditioner", registry, num_classes=4, emb_dim=8, unrelated=1)
    assert isinstance(label, TinyLabel) and (label.config.num_classes, label.config.emb_dim) == (4, 8)
    with pytest.raises(UserError, match="set num_classes"):
        recipe.conditioners[0].build("conditioner", registry)


# -- errors: paths, lines, suggestions, all at once ------------------------------------------


def test_component_field_error_names_the_dotted_path_and_the_yaml_line(tmp_path, registry):
    path = write(tmp_path, RECIPE_YAML.replace("attention_heads: 2", "attention_heads: 0"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    assert list(problems_of(info)) == ["denoiser.attention_heads"]
    message = problems_of(info)["denoiser.attention_heads"]
    assert "greater than or equal to 1" in message and message.endswith("(line 9)")
    assert RECIPE_YAML.splitlines()[8].strip() == "attention_heads: 2"
    assert str(path) in str(info.value) and "denoiser.attention_heads" in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_component_field_suggests_the_nearest_field(tmp_path, registry):
    path = write(tmp_path, RECIPE_YAML.replace("attention_heads: 2", "attention_head: 2"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    message = problems_of(info)["denoiser.attention_head"]
    assert "unknown field 'attention_head'; did you mean 'attention_heads'?" in message
    assert "fields: in_channels, emb_dim, attention_heads, num_time_steps" in message
    assert message.endswith("(line 9)")


def test_unknown_component_name_is_reported_at_its_name_with_a_suggestion(tmp_path, registry):
    path = write(tmp_path, RECIPE_YAML.replace("schedule: {name: tiny_schedule,", "schedule: {name: tiny_schedul,"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    message = problems_of(info)["schedule.name"]
    assert "unknown schedule 'tiny_schedul'. Did you mean 'tiny_schedule'?" in message
    assert message.endswith("(line 11)")


def test_every_problem_is_reported_at_once(tmp_path, registry):
    text = (RECIPE_YAML.replace("attention_heads: 2", "attention_heads: 0")
            .replace("emb_dim: 8", "emb_dim: -3")
            .replace("dropout: 0.2", "dropot: 0.2")
            .replace("metrics: [mean_abs]", "metrics: [mean_ab]"))
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text), registry=registry)
    assert sorted(problems_of(info)) == [
        "conditioners.0.dropot", "denoiser.attention_heads", "denoiser.emb_dim", "evaluate.metrics.0.name",
    ]
    assert str(info.value).startswith(f"{tmp_path / 'recipe.yaml'}: 4 problem(s) in the recipe:")


def test_structure_and_component_problems_are_reported_together(tmp_path, registry):
    text = (RECIPE_YAML.replace("name: tiny\n", "name: tiny\nseed: zero\n", 1)
            .replace("attention_heads: 2", "attention_heads: 0"))
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text), registry=registry)
    problems = problems_of(info)
    assert set(problems) == {"seed", "denoiser.attention_heads"}
    assert problems["seed"].endswith("(line 2)")
    assert problems["denoiser.attention_heads"].endswith("(line 10)")


def test_unknown_structural_field_suggests_the_nearest_setting(registry):
    data = minimal()
    data["train"] = {"denoiser": {"step": 10}}
    data["denoisr"] = {"name": "tiny_denoiser"}
    with pytest.raises(RecipeError) as info:
        load_recipe(data, registry=registry)
    problems = problems_of(info)
    assert "did you mean 'steps'?" in problems["train.denoiser.step"]
    assert "did you mean 'denoiser'?" in problems["denoisr"]


def test_a_missing_component_name_is_a_missing_field(registry):
    data = minimal()
    data["denoiser"] = {"attention_heads": 2}
    data["schedule"] = {"name": "tiny_schedule", "num_train_steps": 1}
    with pytest.raises(RecipeError) as info:
        load_recipe(data, registry=registry)
    assert problems_of(info)["denoiser.name"] == "required field is missing"
    assert "schedule.num_train_steps" in problems_of(info)


@pytest.mark.parametrize("text, fragment", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "a recipe must be a YAML mapping"),
    ("", "a recipe must be a YAML mapping"),
])
def test_a_file_that_is_not_a_recipe_mapping_is_one_clear_error(tmp_path, registry, text, fragment):
    with pytest.raises(RecipeError, match=fragment):
        load_recipe(write(tmp_path, text), registry=registry)


def test_a_missing_recipe_file_is_a_user_error(tmp_path, registry):
    with pytest.raises(RecipeError, match="recipe file not found: .*nope.yaml"):
        load_recipe(tmp_path / "nope.yaml", registry=registry)


# -- overrides -------------------------------------------------------------------------------


def test_overrides_set_nested_fields_list_items_and_yaml_typed_values(tmp_path, registry):
    path = write(tmp_path, RECIPE_YAML)
    recipe = load_recipe(path, [
        "train.denoiser.steps=7",
        "conditioners.1.dropout=0.3",          # a list index, into a bare-string node
        "sample.labels=[0, 1]",
        "train.denoiser.ema_decay=null",
        "train.denoiser.compile=true",
        "denoiser.attention_heads=4",
        "schedule=tiny_schedule",              # a whole node replaced by a bare name
        "data.val.name=tiny_clips",            # a mapping created on the way
        "name=run-2",
    ], registry=registry)
    assert recipe.train.denoiser.steps == 7
    assert [c.config.dropout for c in recipe.conditioners] == [0.2, 0.3]
    assert recipe.sample.labels == [0, 1]
    assert recipe.train.denoiser.ema_decay is None and recipe.train.denoiser.compile is True
    assert recipe.denoiser.config.attention_heads == 4
    assert recipe.schedule.config.num_train_steps == 10  # the bare name resets the node to defaults
    assert recipe.data.val is not None and recipe.data.val.name == "tiny_clips"
    assert recipe.name == "run-2"


def test_apply_override_edits_plain_data_and_returns_the_path():
    data = {"a": {"b": 1}, "items": ["x", {"name": "y", "k": 1}], "s": "plain"}
    assert apply_override(data, " a.b = 2.5") == "a.b"
    assert apply_override(data, "items.0.k=3") == "items.0.k"
    assert apply_override(data, "items.1=z") == "items.1"
    assert apply_override(data, "new.deep.value='007'") == "new.deep.value"
    assert apply_override(data, "a.empty=") == "a.empty"
    assert data == {"a": {"b": 2.5, "empty": None}, "items": [{"name": "x", "k": 3}, "z"],
                    "s": "plain", "new": {"deep": {"value": "007"}}}


@pytest.mark.parametrize("item, fragment", [
    ("noequals", "is not of the form dotted.path=value"),
    ("=3", "is not of the form dotted.path=value"),
    ("a..b=1", "has an empty part"),
    ("a.b=[1, 2", "value is not valid YAML"),
    ("items.2.k=1", "'items.2': list index '2' is not in 0..1"),
    ("items.-1.k=1", "list index '-1' is not in 0..1"),
    ("items.first.k=1", "list index 'first' is not in 0..1"),
    ("a.b.c=1", "'a.b' is a int, not a mapping or list"),
])
def test_apply_override_refuses_bad_text_with_the_reason(item, fragment):
    data = {"a": {"b": 1}, "items": [{"k": 0}, {"k": 1}]}
    before = yaml.safe_dump(data)
    with pytest.raises(ValueError) as info:
        apply_override(data, item)
    assert fragment in str(info.value)
    if "YAML" not in fragment and "form" not in fragment:
        assert item.split("=")[0] in str(info.value) or "'items." in str(info.value)
    assert yaml.safe_dump(data) == before


def test_bad_overrides_are_all_reported_under_set(tmp_path, registry):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, RECIPE_YAML), ["noequals", "conditioners.5.dropout=0.1"], registry=registry)
    assert [path for path, _ in info.value.problems] == ["--set", "--set"]
    assert "list index '5' is not in 0..1" in str(info.value)


def test_a_value_set_by_an_override_is_blamed_on_the_override_not_the_file_line(tmp_path, registry):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, RECIPE_YAML), ["denoiser.attention_heads=0"], registry=registry)
    message = problems_of(info)["denoiser.attention_heads"]
    assert message.endswith("(from --set denoiser.attention_heads=0)") and "(line" not in message


# -- dump, save, hash ------------------------------------------------------------------------


def test_dump_includes_component_defaults_flat(tmp_path, registry):
    dumped = load_recipe(write(tmp_path, RECIPE_YAML), registry=registry).dump()
    assert dumped["tokenizer"] == {"name": "tiny_tokenizer", "factor": 2}
    assert dumped["denoiser"] == {"name": "tiny_denoiser", "in_channels": None, "emb_dim": 8,
                                  "attention_heads": 2, "num_time_steps": 1000}
    assert dumped["conditioners"][1] == {"name": "tiny_label", "num_classes": None, "emb_dim": None,
                                         "dropout": 0.1}
    assert dumped["evaluate"]["metrics"] == [{"name": "mean_abs", "reduce": "mean"}]
    assert dumped["guidance"] == {"name": "tiny_cfg", "scale": 2.0}
    assert dumped["train"]["denoiser"]["optimizer"]["betas"] == [0.9, 0.999]
    assert "options" not in yaml.safe_dump(dumped)


def test_saved_recipe_loads_back_equal(tmp_path, registry):
    recipe = load_recipe(write(tmp_path, RECIPE_YAML), ["train.denoiser.optimizer.lr=3e-5"], registry=registry)
    save_recipe(recipe, tmp_path / "resolved.yaml")
    text = (tmp_path / "resolved.yaml").read_text()
    assert "!!python" not in text  # plain YAML, safe to load anywhere
    again = load_recipe(tmp_path / "resolved.yaml", registry=registry)
    assert again.dump() == recipe.dump()
    assert again.hash() == recipe.hash()
    assert again.train.denoiser.optimizer.lr == 3e-5


def test_hash_is_stable_and_sensitive_to_the_named_parts_only(tmp_path, registry):
    a = load_recipe(write(tmp_path, RECIPE_YAML), registry=registry)
    b = load_recipe(write(tmp_path, RECIPE_YAML), registry=registry)
    assert a.hash("denoiser", "schedule") == b.hash("denoiser", "schedule")
    assert len(a.hash()) == 16 and a.hash() != a.hash("denoiser")

    # Spelling out a default changes nothing: the hash is of the resolved recipe.
    explicit = load_recipe(write(tmp_path, RECIPE_YAML), ["denoiser.num_time_steps=1000"], registry=registry)
    assert explicit.hash() == a.hash()

    changed = load_recipe(write(tmp_path, RECIPE_YAML), ["denoiser.attention_heads=4"], registry=registry)
    assert changed.hash("denoiser") != a.hash("denoiser")
    assert changed.hash("denoiser", "schedule") != a.hash("denoiser", "schedule")
    assert changed.hash("schedule", "train.denoiser", "conditioners.0") == \
        a.hash("schedule", "train.denoiser", "conditioners.0")
    assert changed.hash() != a.hash()

    # A part's hash is of its content, whatever else the recipe holds.
    assert a.hash("conditioners.1") == load_recipe(
        write(tmp_path, RECIPE_YAML), ["name=other", "seed=5"], registry=registry).hash("conditioners.1")
    assert a.hash("data.val") == changed.hash("data.val")  # an absent optional part is a valid part


def test_hash_survives_a_new_config_field_with_a_default(tmp_path):
    """A library upgrade that adds a field with a default keeps existing runs' stage hashes valid."""
    from pydantic import Field

    class NewerDenoiser(TinyDenoiser):
        class Config(TinyDenoiser.Config):
            new_option: float = Field(0.5, description="added in a later version")

    old = Registry(entry_points=lambda group: [])
    new = Registry(entry_points=lambda group: [])
    for (kind, name), cls in ALL.items():
        old.register(kind, name, cls)
        new.register(kind, name, NewerDenoiser if name == "tiny_denoiser" else cls)
    path = write(tmp_path, RECIPE_YAML)
    before = load_recipe(path, registry=old)
    after = load_recipe(path, registry=new)
    assert "new_option" in after.dump()["denoiser"]  # the saved resolved recipe shows it
    assert after.hash() == before.hash() and after.hash("denoiser") == before.hash("denoiser")
    assert load_recipe(path, ["denoiser.new_option=0.7"], registry=new).hash("denoiser") != before.hash("denoiser")


def test_hash_of_a_part_the_recipe_does_not_have_is_an_error(registry):
    recipe = load_recipe(minimal(), registry=registry)
    with pytest.raises(KeyError, match="no part 'denoisr'"):
        recipe.hash("denoisr")
    with pytest.raises(KeyError, match="no part 'conditioners.0'"):
        recipe.hash("conditioners.0")


def test_component_spec_accepts_flat_and_bare_forms():
    assert ComponentSpec.model_validate("ddpm") == ComponentSpec(name="ddpm")
    spec = ComponentSpec.model_validate({"name": "unet3d", "channels": 8})
    assert spec.options == {"channels": 8}
    assert spec.dump() == {"name": "unet3d", "channels": 8}  # unresolved: as written
    with pytest.raises(RuntimeError, match="has not been resolved"):
        spec.config
    assert Recipe.model_fields["guidance"].get_default() is None  # no guidance: the core names no plug-in


# -- sampler nodes ---------------------------------------------------------------------------


@pytest.fixture
def with_ddim(registry) -> Registry:
    from vqvdm_plugins.samplers.ddim import DDIMSampler

    registry.register("sampler", "ddim", DDIMSampler)
    return registry


def test_sampler_settings_are_component_nodes_and_a_plain_name_still_works(tmp_path, with_ddim):
    text = RECIPE_YAML + "sample: {sampler: ddim}\n"
    text = text.replace("  metrics: [mean_abs]\n", "  metrics: [mean_abs]\n  sampler: {name: ddim, eta: 0.5}\n")
    recipe = load_recipe(write(tmp_path, text), registry=with_ddim)
    assert recipe.sample.sampler.name == "ddim" and recipe.sample.sampler.config.eta == 0.0
    assert recipe.evaluate.sampler.config.eta == 0.5
    assert recipe.dump()["evaluate"]["sampler"] == {"name": "ddim", "eta": 0.5, "spacing": "uniform"}
    assert load_recipe(minimal(), registry=with_ddim).sample.sampler is None  # null: the schedule's default


def test_sampler_node_problems_are_reported_at_load_time_with_paths(tmp_path, with_ddim):
    text = RECIPE_YAML + "sample: {sampler: dimm}\n"
    text = text.replace("  metrics: [mean_abs]\n", "  metrics: [mean_abs]\n  sampler: {name: ddim, eta: -1, etta: 2}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text), registry=with_ddim)
    problems = problems_of(info)
    assert "unknown sampler 'dimm'. Did you mean 'ddim'?" in problems["sample.sampler.name"]
    assert "greater than or equal to 0" in problems["evaluate.sampler.eta"]
    assert "unknown field 'etta'; did you mean 'eta'?" in problems["evaluate.sampler.etta"]


def test_a_sampler_node_at_its_defaults_hashes_as_the_plain_name_it_replaced(with_ddim):
    def sample_hash(node) -> str:
        return load_recipe({**minimal(), "sample": {"sampler": node}}, registry=with_ddim).hash("sample")

    plain = sample_hash("ddim")
    assert sample_hash({"name": "ddim"}) == plain == sample_hash({"name": "ddim", "eta": 0.0})
    assert sample_hash({"name": "ddim", "eta": 0.5}) != plain
    assert sample_hash(None) != plain


# -- hostile files ---------------------------------------------------------------------------


def test_a_binary_recipe_file_is_one_clear_error(tmp_path, registry):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: tiny\n\xff\xfe\x00\x01 binary")
    with pytest.raises(RecipeError, match=r"recipe.yaml: not a text file: byte 11 is not UTF-8"):
        load_recipe(path, registry=registry)


def test_a_billion_laughs_recipe_is_refused_at_once(tmp_path, registry):
    lines = ["name: tiny", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]  # 9^10 values
    path = write(tmp_path, "\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="expands to more than 100,000 values through YAML aliases"):
        load_recipe(path, registry=registry)
    assert time.perf_counter() - start < 2.0
    path = write(tmp_path, "name: tiny\nloop: &a [1, *a]\n")
    with pytest.raises(RecipeError, match="refers to a node that contains it"):
        load_recipe(path, registry=registry)


def test_anchors_and_aliases_in_a_real_recipe_still_work(tmp_path, registry):
    text = RECIPE_YAML.replace("data:\n  train:\n    name: tiny_clips\n    frames: 4\n",
                               "data:\n  train: &clips\n    name: tiny_clips\n    frames: 4\n  val: *clips\n")
    recipe = load_recipe(write(tmp_path, text), registry=registry)
    assert recipe.data.val.name == "tiny_clips" and recipe.data.val.config.frames == 4

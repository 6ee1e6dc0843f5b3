"""Recipe files: YAML validated by pydantic, in two phases.

Phase one validates the recipe's own structure (run name, seed, stages, training settings...). A
component node is ``{name: <registered name>, <its Config fields>...}``; phase two looks each name
up in the registry and validates the remaining fields against that component's ``Config``, so the
set of components stays open. Every problem is collected with its recipe path
(``denoiser.attention_heads``) and, where the YAML gives it, its line.

The recipe's four jobs live in their own modules, all re-exported here (import from here):
:mod:`vqvdm_core.recipe.schema` (the models), :mod:`vqvdm_core.recipe.loading` (reading and
validating, with error locations), :mod:`vqvdm_core.recipe.overrides` (``--set``) and
:mod:`vqvdm_core.recipe.hashing` (``Recipe.hash``).
"""

from __future__ import annotations

from vqvdm_core.recipe.hashing import _DEFAULT, _non_default, recipe_hash
from vqvdm_core.recipe.loading import (
    MAX_RECIPE_VALUES,
    _check_expanded_size,
    _component_problems,
    _line_map,
    _located,
    _model_at,
    _model_in,
    _nearest_line,
    _pydantic_problems,
    _raw_components,
    load_recipe,
    save_recipe,
    validate_recipes,
)
from vqvdm_core.recipe.overrides import _index, apply_override
from vqvdm_core.recipe.schema import (
    _NO_DEFAULT,
    COMPONENT_SLOTS,
    STAGES,
    ComponentSpec,
    DataSettings,
    EvaluateSettings,
    LatentSettings,
    OptimizerSettings,
    Precision,
    Recipe,
    RuntimeSettings,
    SampleSettings,
    SamplerSpec,
    StageName,
    StageTraining,
    Strict,
    TrainSettings,
    _get_path,
    _set_path,
)

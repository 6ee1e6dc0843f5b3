"""The folder layout of ``vqvdm_core`` (docs/architecture.md, "Where things live") and the old paths.

Every module path of the flat layout before the regrouping still imports, as the very module at its
new path (``vqvdm_core/_moved.py``); the top level holds only the entry points, the errors, the
registry and the packages, so a new flat module is a decision made here; the core imports no plug-in.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vqvdm_core._moved import MOVED

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "vqvdm_core"

TOP_LEVEL = {
    "__init__.py", "__main__.py", "_moved.py", "cli.py", "errors.py", "registry.py",
    "data", "engine", "interfaces", "io", "pipeline", "profiling", "recipe", "reporting", "runtime", "system",
}
"""What ``vqvdm_core/`` holds: add a name here only with its place in docs/architecture.md."""


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_path(old, new):
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is sys.modules[new]
    assert module.__name__ == new and module.__spec__.name == new  # the new module keeps its own identity
    parent, _, child = old.rpartition(".")
    assert getattr(importlib.import_module(parent), child) is module  # `from vqvdm_core import devices`


def test_names_imported_from_old_paths_are_the_identical_objects_in_a_fresh_process():
    # Old paths imported first, before any line names the new ones, in a process of its own.
    code = """
import json
from vqvdm_core.config import ComponentConfig, Configurable
from vqvdm_core.sampling import SamplingChain, run_sampler
from vqvdm_core.bench import run_bench, count_flops
from vqvdm_core.engine.loader import InfiniteLoader
from vqvdm_core.data.loader import collate_clips
from vqvdm_core import devices, report_media
# the new paths only now (a sorter must leave this order: the old ones come first on purpose)
from vqvdm_core.interfaces.configurable import ComponentConfig as C2, Configurable as K2
from vqvdm_core.interfaces.sampler import SamplingChain as S2, run_sampler as R2
from vqvdm_core.profiling.table3 import run_bench as B2
from vqvdm_core.profiling.measure import count_flops as F2
from vqvdm_core.engine.batches import InfiniteLoader as L2
from vqvdm_core.data.collate import collate_clips as D2
import vqvdm_core.runtime.devices as dev2
import vqvdm_core.reporting.media as media2
from vqvdm_core.interfaces import Configurable as K3, SamplingChain as S3
print(json.dumps([ComponentConfig is C2, Configurable is K2 is K3, SamplingChain is S2 is S3, run_sampler is R2,
                  run_bench is B2, count_flops is F2, InfiniteLoader is L2, collate_clips is D2,
                  devices is dev2, report_media is media2]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [True] * 10
    assert "Warning" not in proc.stderr  # the aliases are silent


def test_an_old_module_path_still_runs_with_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "vqvdm_core.recipe_docs"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python -m vqvdm_core.recipe.docs > docs/recipes.md" in proc.stdout


def test_the_packages_that_kept_an_old_name_export_what_the_module_did():
    from vqvdm_core import interfaces, recipe, system

    old_interfaces = ["NO_LABEL", "PredictionType", "TrainStep", "Trainable", "VideoTokenizer", "Denoiser",
                      "NoiseSchedule", "Conditioner", "Guidance", "Metric", "Sampler", "VideoDataset",
                      "ExperimentLogger", "RunInfo", "accepts_conditions", "update_metric", "ModelFn", "INTERFACES",
                      "iter_parameters", "ComponentConfig", "Configurable", "DenoiseFn", "SamplingChain",
                      "StepCallback", "respace"]
    old_recipe = ["MAX_RECIPE_VALUES", "load_recipe", "save_recipe", "validate_recipes", "apply_override",
                  "recipe_hash", "COMPONENT_SLOTS", "STAGES", "ComponentSpec", "DataSettings", "EvaluateSettings",
                  "LatentSettings", "OptimizerSettings", "Precision", "Recipe", "SampleSettings", "SamplerSpec",
                  "StageName", "StageTraining", "Strict", "TrainSettings"]
    old_system = ["LatentVideoDiffusion", "WIRED_FIELDS", "build_system", "known_input", "known_prefix"]
    for package, names in ((interfaces, old_interfaces), (recipe, old_recipe), (system, old_system)):
        assert [n for n in names if not hasattr(package, n)] == [], package.__name__
    assert interfaces.INTERFACES["sampler"] is interfaces.sampler.Sampler


def test_the_top_level_holds_only_the_intended_modules_and_no_old_path_has_a_file():
    present = {p.name for p in CORE.iterdir() if p.name != "__pycache__"}
    assert present == TOP_LEVEL
    for old, new in MOVED.items():
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), old
        assert importlib.util.find_spec(new).origin.startswith(str(CORE)), new


def _imports(path: Path) -> list[str]:
    """Every module an ``import`` statement in ``path`` names (``from a import b``: ``a`` and ``a.b``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_the_core_never_imports_a_plugin():
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in sorted(CORE.rglob("*.py"))
                 for name in _imports(path) if name.split(".")[0] in ("vqvdm_plugins", "vqvdm_example_plugin")]
    assert offenders == []


def test_the_repository_imports_only_new_paths():
    folders = ("vqvdm_core", "tests", "benchmarks", "plugins", "examples")
    left_alone = {ROOT / "benchmarks" / "quickstart.py"}  # run as a fresh-clone check of its own
    offenders = [f"{path.relative_to(ROOT)}: {name}" for folder in folders
                 for path in sorted((ROOT / folder).rglob("*.py")) if path not in left_alone
                 for name in _imports(path) if name in MOVED]
    assert offenders == []


def test_the_alias_finder_is_installed_once():
    from vqvdm_core import _moved

    before = [f for f in sys.meta_path if isinstance(f, _moved._MovedFinder)]
    _moved.install()
    assert [f for f in sys.meta_path if isinstance(f, _moved._MovedFinder)] == before
    assert len(before) == 1

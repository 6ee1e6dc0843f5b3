"""A real third-party plug-in: `plugins/example-plugin` is pip-installed into an isolated folder
and found by a separate Python process through its entry point alone.

The install (about two seconds) happens once per test session. The plug-in is never installed
into the project's virtual environment: the subprocesses see it through ``PYTHONPATH`` only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_plugins.components import ALL
from fake_plugins.distributions import entry_points_from, write_distribution

from vqvdm_core.errors import RecipeError
from vqvdm_core.recipe import load_recipe
from vqvdm_core.registry import GROUPS, Registry

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "example-plugin"
FAKES = Path(__file__).resolve().parent  # holds fake_plugins/, the stand-in components


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target`` the example plug-in (from a copy, so that no build files land in
    the checkout) plus a fake distribution of tiny stand-in components for recipes."""
    root = tmp_path_factory.mktemp("example_plugin")
    src = root / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Tiny components of every kind, so that a recipe validates without the paper's plug-ins.
    fakes = {GROUPS[kind]: {} for kind, _ in ALL}
    for (kind, name), cls in ALL.items():
        if name != "none":  # vqvdm provides the `none` guidance
            fakes[GROUPS[kind]][name] = f"{cls.__module__}:{cls.__qualname__}"
    write_distribution(site, "vqvdm-test-fakes", "0.0", fakes)
    return site


def run_python(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VQVDM_DEBUG", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(FAKES)])
    env["COLUMNS"] = "200"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the checkout
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(site, "-m", "vqvdm_core", *args)


def test_the_plugin_installs_in_isolation_with_its_entry_point(plugin_site):
    [info] = plugin_site.glob("vqvdm_example_plugin-*.dist-info")
    assert info.name == "vqvdm_example_plugin-0.1.0.dist-info"
    entry_points = (info / "entry_points.txt").read_text()
    assert "temporal_flicker = vqvdm_example_plugin.temporal_flicker:TemporalFlicker" in entry_points
    # A conditioner on a field of its own, and a data set that provides it (issue 19).
    assert "motion = vqvdm_example_plugin.motion:MotionConditioner" in entry_points
    assert "motion_clips = vqvdm_example_plugin.motion:MotionClips" in entry_points
    assert (plugin_site / "vqvdm_example_plugin" / "temporal_flicker.py").is_file()
    assert not list(PLUGIN.glob("*.egg-info")) and not (PLUGIN / "build").exists()
    # This process never sees it: the project's environment is untouched.
    assert "temporal_flicker" not in Registry().names("metric")


PROBE = textwrap.dedent("""\
    # Runs with the plug-in on PYTHONPATH only: list, then build and compute, then run its own tests.
    import json, sys
    import numpy as np
    import vqvdm_core

    out_path, fake_path, real_path, tests = sys.argv[1:5]
    [e] = [e for e in vqvdm_core.REGISTRY.entries("metric") if e.name == "temporal_flicker"]
    listed = {"distribution": e.distribution, "version": e.version, "target": e.target,
              "status": e.status, "summary": e.summary(),
              "imported": "vqvdm_example_plugin" in sys.modules}

    import torch
    metric = vqvdm_core.create("metric", "temporal_flicker")
    metric.update(fake=torch.from_numpy(np.load(fake_path)), real=torch.from_numpy(np.load(real_path)))
    values = metric.compute()

    import pytest
    own_tests = int(pytest.main(["-q", "-p", "no:cacheprovider", tests]))
    with open(out_path, "w") as f:
        json.dump({"listed": listed, "values": values, "own_tests": own_tests,
                   "tested_file": sys.modules["vqvdm_example_plugin"].__file__}, f)
    """)


@pytest.fixture(scope="session")
def probe(plugin_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One Python process (one torch import) that sees the plug-in only through its entry point."""
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(1)
    fake = rng.uniform(-1, 1, size=(2, 3, 5, 4, 4)).astype(np.float32)
    real = (0.3 * np.sin(np.arange(5) * 0.5))[None, None, :, None, None] * np.ones((1, 3, 5, 4, 4))
    np.save(root / "fake.npy", fake)
    np.save(root / "real.npy", real.astype(np.float32))
    (root / "probe.py").write_text(PROBE)
    proc = run_python(plugin_site, str(root / "probe.py"), str(root / "out.json"), str(root / "fake.npy"),
                      str(root / "real.npy"), str(PLUGIN / "tests"), cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((root / "out.json").read_text())
    result["pytest_output"] = proc.stdout
    result["fake"], result["real"] = fake, real.astype(np.float32)
    return result


def test_python_level_registry_lists_the_plugin_without_importing_it(probe):
    assert probe["listed"] == {
        "distribution": "vqvdm-example-plugin", "version": "0.1.0",
        "target": "vqvdm_example_plugin.temporal_flicker:TemporalFlicker", "status": "available",
        "summary": "Temporal flicker: mean absolute frame-to-frame change of generated and real clips, "
                   "and their ratio.",
        "imported": False,
    }


def test_the_plugin_metric_computes_the_right_values_through_the_registry(probe):
    def flicker(v: np.ndarray) -> float:  # mean |x[t+1] - x[t]| with pixels mapped to [0, 1]
        v = v.astype(np.float64)
        return float(np.mean(np.abs(v[:, :, 1:] - v[:, :, :-1])) / 2)

    values, fake, real = probe["values"], probe["fake"], probe["real"]
    assert set(values) == {"fake", "real", "ratio"}
    assert values["fake"] == pytest.approx(flicker(fake), rel=1e-6)
    assert values["real"] == pytest.approx(flicker(real), rel=1e-6)
    assert values["ratio"] == pytest.approx(flicker(fake) / flicker(real), rel=1e-6)


def test_the_plugin_own_tests_pass_against_the_installed_copy(probe, plugin_site):
    assert probe["own_tests"] == 0, probe["pytest_output"]
    assert probe["tested_file"] == str(plugin_site / "vqvdm_example_plugin" / "__init__.py")
    assert " passed" in probe["pytest_output"] and "failed" not in probe["pytest_output"]


def test_cli_lists_the_plugin_metric_with_its_distribution(plugin_site):
    proc = cli(plugin_site, "list-components", "--kind", "metric", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    row = rows["temporal_flicker"]
    assert row["distribution"] == "vqvdm-example-plugin" and row["kind"] == "metric"
    assert row["version"] == "0.1.0" and row["status"] == "available" and "error" not in row
    assert row["summary"].startswith("Temporal flicker: mean absolute frame-to-frame change")
    assert rows["mean_abs"]["distribution"] == "vqvdm-test-fakes"


RECIPE = textwrap.dedent("""\
    name: flicker-check
    data: {train: tiny_clips}
    tokenizer: tiny_tokenizer
    denoiser: tiny_denoiser
    schedule: tiny_schedule
    guidance: tiny_cfg
    evaluate:
      metrics:
        - mean_abs
        - name: temporal_flicker
          order: 2
    """)


def test_cli_validates_a_recipe_that_uses_the_plugin_metric(plugin_site, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(RECIPE)
    proc = cli(plugin_site, "validate", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout and "metric=temporal_flicker" in proc.stdout


def test_the_installed_plugin_config_takes_part_in_recipe_validation(plugin_site, tmp_path, monkeypatch):
    # In this process, through a registry over the isolated site's entry points only.
    monkeypatch.syspath_prepend(str(plugin_site))
    registry = Registry(entry_points=entry_points_from(plugin_site))
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("order: 2", "ordr: 2"))
    with pytest.raises(RecipeError) as info:
        load_recipe(bad, ["evaluate.metrics.1.stride=0"], registry=registry)
    problems = dict(info.value.problems)
    assert problems["evaluate.metrics.1.ordr"] == (
        "unknown field 'ordr'; did you mean 'order'? (fields: order, stride, real) (line 11)")
    assert problems["evaluate.metrics.1.stride"].endswith("(from --set evaluate.metrics.1.stride=0)")
    recipe = load_recipe(yaml.safe_load(RECIPE), registry=registry)
    assert recipe.evaluate.metrics[1].config.order == 2
    assert registry.entry("metric", "temporal_flicker").distribution == "vqvdm-example-plugin"


def test_a_third_party_schedule_is_listed_and_validated_with_the_samplers_in_recipes(plugin_site, tmp_path):
    proc = cli(plugin_site, "list-components", "--kind", "schedule", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["cosine_path"]["distribution"] == "vqvdm-example-plugin"
    assert rows["cosine_path"]["status"] == "available" and {"ddpm", "flow", "edm"} <= set(rows)
    below_noise = RECIPE.replace("schedule: tiny_schedule", "schedule: {name: cosine_path, t_max: 0.98}")
    good = tmp_path / "cosine.yaml"
    good.write_text(below_noise + "sample: {sampler: {name: heun}}\n")
    proc = cli(plugin_site, "validate", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "schedule=cosine_path" in proc.stdout and "sampler=heun" in proc.stdout
    out = {}
    for name, text in (("spacing", below_noise + "sample: {sampler: {name: heun, spacing: log_snr}}\n"),
                       ("noise", RECIPE.replace("schedule: tiny_schedule", "schedule: cosine_path")
                        + "sample: {sampler: {name: heun, space: sigma}}\n")):
        (tmp_path / f"{name}.yaml").write_text(text)
        proc = cli(plugin_site, "validate", str(tmp_path / f"{name}.yaml"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
        out[name] = proc.stdout + proc.stderr
    assert "sample.sampler.spacing" in out["spacing"] and "use one of: uniform, trailing" in out["spacing"]
    # the chain starts in pure noise, where x / alpha (heun's sigma coordinates) does not exist
    assert "sample.sampler" in out["noise"] and "use space: flow" in out["noise"]

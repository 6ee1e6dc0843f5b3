"""``examples/ablation_guidance.py`` (docs/ablations.md): register a rescaled CFG from Python, swap it
into a trained quickstart run with one override, and score both guidances with the motion probe.

The script's ``--tiny`` mode runs once per module (tiny tokenizer and denoiser, two training steps
each, 4 clips, 2 sampling steps: about ten seconds on one CPU thread) into a temporary folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "examples" / "ablation_guidance.py"
ARMS = ["cfg", "cfg_rescaled"]
MOTION_PROBE_METRICS = ["class_accuracy", "fps_speed_spearman", "speed_rel_error", "motion_consistency",
                        "persistence", "mean_speed_px", "num_clips"]
TINY_CLIPS = 4  # clips per arm in --tiny mode


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The script imported as a module; importing it registers ``cfg_rescaled``, undone afterwards."""
    from vqvdm_core.registry import REGISTRY

    spec = importlib.util.spec_from_file_location("ablation_guidance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        REGISTRY.unregister("guidance", "cfg_rescaled")
        sys.modules.pop(spec.name, None)


@dataclass
class TinyAblation:
    out: Path
    results: dict[str, dict[str, float]]
    printed: str

    @property
    def run(self) -> Path:
        return self.out / "quickstart"


@pytest.fixture(scope="module")
def tiny(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> TinyAblation:
    """``main(["--tiny", "--out", DIR])``: what it returned and what it printed."""
    out = tmp_path_factory.mktemp("ablation")
    printed = io.StringIO()
    with redirect_stdout(printed):
        results = example.main(["--tiny", "--out", str(out)])
    return TinyAblation(out, results, printed.getvalue())


@pytest.mark.slow
def test_tiny_mode_trains_a_quickstart_run_in_the_given_folder(tiny):
    assert (tiny.run / "recipe.yaml").is_file()
    for stage in ("tokenizer", "latents", "denoiser"):
        assert json.loads((tiny.run / stage / "stage.json").read_text())["status"] == "done"
    assert (tiny.run / "tokenizer" / "tokenizer.safetensors").is_file()
    assert (tiny.run / "denoiser" / "denoiser.safetensors").is_file()
    assert [p.name for p in tiny.out.iterdir()] == ["quickstart"]  # nothing else written there


@pytest.mark.slow
def test_every_arm_reports_every_motion_probe_metric_as_a_finite_number(tiny):
    assert list(tiny.results) == ARMS
    for arm, metrics in tiny.results.items():
        assert list(metrics) == MOTION_PROBE_METRICS, arm
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), (arm, metrics)
        assert metrics["num_clips"] == TINY_CLIPS  # both arms score the same conditions
        for fraction in ("class_accuracy", "motion_consistency", "persistence"):
            assert 0.0 <= metrics[fraction] <= 1.0, (arm, fraction)
        assert -1.0 <= metrics["fps_speed_spearman"] <= 1.0
        assert metrics["speed_rel_error"] >= 0.0 and metrics["mean_speed_px"] >= 0.0


@pytest.mark.slow
def test_printed_table_has_a_row_per_metric_and_a_column_per_arm(tiny):
    lines = tiny.printed[tiny.printed.index("guidance ablation on"):].splitlines()

    def cells(first: str, bar: str) -> list[str]:
        line = next(line for line in lines if line.startswith(f"{bar} {first} "))
        return [cell.strip() for cell in line.strip(f"{bar} ").split(bar)]

    assert cells("metric", "┃") == ["metric", *ARMS]
    for key in MOTION_PROBE_METRICS:
        assert cells(key, "│") == [key, *(f"{tiny.results[arm][key]:.3f}" for arm in ARMS)]


@pytest.mark.slow
def test_the_override_swaps_the_guidance_and_nothing_else(example, tiny):
    from vqvdm_core.pipeline import open_run
    from vqvdm_core.registry import REGISTRY

    contexts = {arm: open_run(tiny.run, [f"guidance.name={arm}"]) for arm in ARMS}
    recipes = {arm: ctx.recipe.model_dump(mode="json") for arm, ctx in contexts.items()}
    assert {k: v for k, v in recipes["cfg"].items() if k != "guidance"} == \
        {k: v for k, v in recipes["cfg_rescaled"].items() if k != "guidance"}

    systems = {arm: ctx.system(trained=True) for arm, ctx in contexts.items()}
    assert type(systems["cfg"].guidance) is REGISTRY.load("guidance", "cfg")
    rescaled = systems["cfg_rescaled"].guidance
    assert isinstance(rescaled, example.RescaledCFG)
    assert rescaled.scale == systems["cfg"].guidance.scale == 3.0  # the recipe's scale carries over
    weights = {arm: s.state_dict() for arm, s in systems.items()}
    assert weights["cfg"].keys() == weights["cfg_rescaled"].keys()
    assert all(torch.equal(weights["cfg"][k], weights["cfg_rescaled"][k]) for k in weights["cfg"])


def test_rescaled_cfg_goes_from_plain_cfg_to_the_conditional_std_as_rescale_goes_0_to_1(example):
    from vqvdm_core.registry import REGISTRY

    def denoiser(x_t, t, emb):  # eps = a * x + b, with (a, b) the embedding: cond and uncond differ
        return emb[:, :1, None, None, None] * x_t + emb[:, 1:2, None, None, None]

    x = torch.randn(3, 4, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(3, dtype=torch.long)
    cond, uncond = torch.tensor([[2.0, 0.3]]).expand(3, 2), torch.tensor([[0.5, -0.2]]).expand(3, 2)
    eps_c = denoiser(x, t, cond)
    plain = REGISTRY.create("guidance", "cfg", scale=3.0).predict(denoiser, x, t, cond=cond, uncond=uncond)

    def rescaled(phi: float, **kw):
        return example.RescaledCFG(scale=3.0, rescale=phi).predict(denoiser, x, t, cond=cond, uncond=uncond, **kw)

    torch.testing.assert_close(rescaled(0.0), plain)
    full = rescaled(1.0)
    dims = (1, 2, 3, 4)
    torch.testing.assert_close(full.std(dim=dims), eps_c.std(dim=dims))
    assert not torch.allclose(full, plain)
    torch.testing.assert_close(rescaled(0.7), 0.7 * full + 0.3 * plain)
    torch.testing.assert_close(rescaled(0.7, scale=1.0), eps_c)  # w = 1: the conditional model


def test_without_a_run_or_tiny_it_says_what_to_give(example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.main([])
    assert exit_info.value.code == 2
    assert "give --run RUN (a trained quickstart run) or --tiny" in capsys.readouterr().err

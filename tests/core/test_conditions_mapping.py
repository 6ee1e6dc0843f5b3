"""Issue 19: conditions are a mapping of field to values, open to any conditioner.

The example plug-in's ``motion`` conditioner (a field neither the class nor the FPS) runs a whole
tiny pipeline: data -> latent cache -> training -> sampling -> samples file -> metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import Field
from rich.console import Console
from safetensors.torch import load_file, save_file
from standins import MeanBrightness, tiny_recipe
from torch import Tensor

from vqvdm_core import load_recipe
from vqvdm_core.data.collate import collate_clips
from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import Metric, accepts_conditions, update_metric
from vqvdm_core.interfaces.configurable import ComponentConfig
from vqvdm_core.registry import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "example-plugin"))
from vqvdm_example_plugin.motion import MotionClips, MotionConditioner  # noqa: E402


class ConditionRecorder(Metric):
    """Records the conditions the generated clips were asked for (a metric that takes ``conditions``)."""

    requires_real = False

    class Config(ComponentConfig):
        field: str = Field("motion", description="the condition field to summarise")

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.reset()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None, labels: Tensor | None = None,
               fps: Tensor | None = None, conditions: dict[str, Tensor] | None = None) -> None:
        if fake is not None:
            self.seen.extend(float(v) for v in (conditions or {}).get(self.config.field, []))
            self.fps.extend(float(v) for v in (fps if fps is not None else []))

    def compute(self) -> dict[str, float]:
        n = len(self.seen)
        return {"count": float(n), "mean": sum(self.seen) / n if n else float("nan"),
                "fps_count": float(len(self.fps))}

    def reset(self) -> None:
        self.seen: list[float] = []
        self.fps: list[float] = []


EXTRA = {("conditioner", "motion"): MotionConditioner, ("dataset", "motion_clips"): MotionClips,
         ("metric", "condition_recorder"): ConditionRecorder}


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory, module_standins):
    from vqvdm_core.pipeline import run_recipe

    for (kind, name), cls in EXTRA.items():
        REGISTRY.register(kind, name, cls, replace=True)
    try:
        root = tmp_path_factory.mktemp("motion") / "runs"
        node = tiny_recipe(
            name="motion", output_dir=str(root),
            data={"train": {"name": "motion_clips", "num_clips": 8, "levels": 2},
                  "val": {"name": "motion_clips", "seed": 1}},
            conditioners=[{"name": "fps"}, {"name": "motion"}],
            evaluate={"metrics": [{"name": "condition_recorder"}, {"name": "mean_brightness"}],
                      "num_samples": 4, "steps": 5, "batch_size": 4, "guidance_scales": [1.0]},
        )
        node["train"]["denoiser"]["val_metrics"] = [{"name": "condition_recorder"}]
        ctx = run_recipe(load_recipe(node), console=Console(file=open("/dev/null", "w")))
        yield ctx
    finally:
        for kind, name in EXTRA:
            REGISTRY.unregister(kind, name)


def test_the_latent_cache_keeps_the_motion_field_the_data_provides(motion_run):
    latents_dir = motion_run.run.stage_dir("latents")
    cache = load_file(str(latents_dir / "latents.safetensors"))
    assert cache["motion"].tolist() == [0.0, 1.0] * 4  # MotionClips(levels=2): index % 2
    assert motion_run.latents_meta()["condition_values"] == {"motion": [0.0, 1.0]}


def test_training_feeds_the_cached_motion_to_the_conditioner(motion_run):
    from vqvdm_core.pipeline.latent_cache import LatentDataset

    system = motion_run.system(trained=True)
    cache = LatentDataset(motion_run.run.stage_dir("latents") / "latents.safetensors")
    batch = collate_clips([cache[i] for i in range(4)])
    [motion] = [c for c in system.conditioners if c.field == "motion"]
    seen: list[Tensor] = []
    handle = motion.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().cpu()))
    try:
        system.train()
        step = system.training_step(batch, step=0)
    finally:
        handle.remove()
    assert [v.tolist() for v in seen] == [[0.0, 1.0, 0.0, 1.0]]
    step.losses["denoiser"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in motion.parameters())
    # The conditioner's weights are part of the trained system's file.
    weights = load_file(str(motion_run.run.stage_dir("denoiser") / "denoiser.safetensors"))
    assert any(key.endswith("mlp.0.weight") for key in weights), sorted(weights)


def test_sampling_takes_the_motion_through_a_conditions_mapping(motion_run):
    system = motion_run.system(trained=True)

    def draw(**kwargs: Any) -> Tensor:
        return system.sample(2, steps=3, generator=torch.Generator().manual_seed(0), decode=False, **kwargs)

    still = draw(conditions={"fps": 8.0, "motion": [0.0, 0.0]})
    fast = draw(conditions={"fps": [8.0, 8.0], "motion": 1.0})
    assert not torch.allclose(still, fast)
    assert torch.equal(still, draw(fps=[8.0, 8.0], conditions={"motion": torch.zeros(2)}))  # keywords still work
    with pytest.raises(UserError, match="'motion'"):
        draw(fps=8.0)  # no value and no default: the field is named
    with pytest.raises(UserError, match="both"):
        draw(fps=8.0, conditions={"fps": 8.0, "motion": 0.0})
    with pytest.raises(UserError, match="'camera'.*no conditioner"):
        draw(conditions={"fps": 8.0, "motion": 0.0, "camera": 1})


def test_the_samples_file_and_conditions_record_keep_the_motion(motion_run):
    from vqvdm_core.pipeline.samples_file import load_samples, load_samples_with_conditions

    sample_dir = motion_run.run.stage_dir("sample")
    video, conditions = load_samples_with_conditions(sample_dir / "samples.safetensors")
    assert video.shape[0] == 1 and conditions["motion"].tolist() == [0.0]  # one (class, fps) cell
    record = json.loads((sample_dir / "conditions.json").read_text())
    assert record["conditions"] == {"motion": [0.0]} and "motion 0" in record["captions"][0]
    assert load_samples(sample_dir / "samples.safetensors")[2].tolist() == [8.0]  # the old reader still reads


def test_metrics_receive_the_motion_and_labels_fps_metrics_still_work(motion_run):
    report = json.loads((motion_run.run.stage_dir("evaluate") / "metrics.json").read_text())
    [result] = report["results"]
    assert result["values"]["condition_recorder"] == {"count": 4.0, "mean": 0.5, "fps_count": 4.0}
    assert "mean" in result["values"]["mean_brightness"]  # written for update(labels=, fps=)
    validation = [json.loads(line) for line in
                  (motion_run.run.stage_dir("denoiser") / "metrics.jsonl").read_text().splitlines()]
    counts = [rec["val/count"] for rec in validation if "val/count" in rec]
    assert counts and all(c == 2.0 for c in counts)  # val_clips: 2, each with its motion


def test_update_metric_passes_conditions_only_to_metrics_that_take_them():
    legacy, recorder = MeanBrightness(), ConditionRecorder()
    assert not accepts_conditions(legacy) and accepts_conditions(recorder)
    fake = torch.zeros(2, 3, 4, 8, 8)
    given = {"label": torch.tensor([-1, -1]), "fps": torch.tensor([8.0, 8.0]), "motion": torch.tensor([0.25, 0.75])}
    update_metric(legacy, fake=fake, conditions=given)  # would raise TypeError if given conditions=
    update_metric(recorder, fake=fake, conditions=given)
    assert legacy.compute() == {"mean": 0.0}
    assert recorder.compute() == {"count": 2.0, "mean": 0.5, "fps_count": 2.0}


def test_caches_and_samples_files_with_only_label_and_fps_still_read(tmp_path):
    from vqvdm_core.pipeline.latent_cache import LatentDataset
    from vqvdm_core.pipeline.samples_file import load_samples_with_conditions

    save_file({"latent": torch.zeros(2, 2, 4, 4, 4), "fps": torch.tensor([8.0, 8.0]),
               "label": torch.tensor([0, 1])}, str(tmp_path / "latents.safetensors"))
    item = LatentDataset(tmp_path / "latents.safetensors")[1]
    assert set(item) == {"latent", "fps", "label"} and item["label"] == 1
    save_file({"video": torch.zeros(2, 3, 4, 4, 4, dtype=torch.uint8), "fps": torch.tensor([8.0, 4.0]),
               "label": torch.tensor([0, 1])}, str(tmp_path / "samples.safetensors"))
    _, conditions = load_samples_with_conditions(tmp_path / "samples.safetensors")
    assert set(conditions) == {"label", "fps"} and conditions["fps"].tolist() == [8.0, 4.0]


def test_an_exported_pipeline_keeps_the_motion_values_to_sample(motion_run, tmp_path):
    from vqvdm_core.pipeline.conditions import grid
    from vqvdm_core.pipeline.export import export_run
    from vqvdm_core.system import LatentVideoDiffusion

    export_run(motion_run.run.path, tmp_path / "pipeline")
    system = LatentVideoDiffusion.from_pretrained(tmp_path / "pipeline")
    assert system.data_info["condition_values"] == {"motion": [0.0, 1.0]}
    conditions = grid(system.data_info, labels=None, fps=[8.0], per_condition=2)
    assert conditions.values == {"motion": [0.0, 1.0]}
    video = system.sample(2, conditions=conditions.tensors(), steps=2, generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 4, 8, 8)


def test_the_report_captions_validation_clips_as_the_denoiser_stage_draws_them():
    from vqvdm_core.pipeline.conditions import cycle
    from vqvdm_core.reporting.report import validation_conditions

    meta = {"num_classes": 2, "class_names": ["a", "b"], "fps_values": [8.0],
            "condition_values": {"motion": [0.0, 0.5, 1.0]}}
    drawn = cycle(meta, 4, fps=None)
    assert drawn.values == {"motion": [0.0, 0.5, 1.0, 0.0]}
    assert validation_conditions(meta, 4, None) == list(zip(drawn.labels, drawn.fps, drawn.captions))
    assert drawn.captions[1] == "b 8 fps motion 0.5"


def test_sample_command_takes_values_of_another_condition_field(motion_run, tmp_path):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app
    from vqvdm_core.pipeline.samples_file import load_samples_with_conditions

    out = tmp_path / "s.gif"
    args = ["sample", str(motion_run.run.path), "--fps", "8", "--num", "2", "--steps", "2", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--condition", "motion=0.25,0.75"])
    assert result.exit_code == 0, result.output
    _, conditions = load_samples_with_conditions(out.with_suffix(".safetensors"))
    assert conditions["motion"].tolist() == [0.25, 0.75]
    refused = CliRunner().invoke(app, [*args, "--condition", "camera=1"])
    assert refused.exit_code == 2 and "motion" in refused.output and "camera" in refused.output

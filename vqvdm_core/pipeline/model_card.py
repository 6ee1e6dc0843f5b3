"""The ``README.md`` model card of an exported pipeline: data, recipe, measured metrics, how to load it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CardComponent", "model_card"]

IN_PROCESS = "<register>"
"""The provider of a component registered in-process (``vqvdm_core.register``), not installed."""

CardComponent = tuple[str, str, str, str]
"""``(part, kind, registered name, provider)`` of one component, e.g. ``("denoiser", "denoiser",
"unet3d", "vqvdm 0.1.0")``."""


def _cell(value: Any) -> str:
    """A value for a Markdown table cell (pipes and newlines escaped)."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _options(node: Mapping[str, Any]) -> str:
    options = {k: v for k, v in node.items() if k != "name"}
    return ", ".join(f"{k}={v}" for k, v in options.items()) if options else "defaults"


def model_card(*, recipe: Any, meta: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]],
               metrics: Mapping[str, Any] | None, components: Sequence[CardComponent], version: str,
               folder_name: str) -> str:
    """The model card of the pipeline exported from ``recipe``'s run.

    ``meta`` is the latents stage's record (clip shape, classes, FPS values, scale); ``records``
    the ``info`` of each finished stage; ``metrics`` the evaluate stage's report (None when the run
    has none that matches its recipe); ``components`` what the pipeline holds.
    """
    frames, height, width = (int(v) for v in meta.get("clip_shape", (0, 0, 0)))
    class_names = list(meta.get("class_names") or [])
    num_classes = int(meta.get("num_classes", 0))
    fps_values = [float(f) for f in meta.get("fps_values") or []]
    classes = (f"{num_classes} classes" if num_classes else "no classes (unconditional)")
    lines = [
        "---",
        "library_name: vqvdm",
        "tags: [video-generation, latent-diffusion, vqvdm]",
        "---",
        "",
        f"# {recipe.name}",
        "",
        f"A latent video diffusion model exported by vqvdm {version} from the run `{recipe.name}`: a "
        f"`{recipe.tokenizer.name}` tokenizer and a `{recipe.denoiser.name}` denoiser trained with DDPM on its "
        f"latents. It generates {frames}-frame {height}x{width} clips, conditioned on "
        + (", ".join(f"`{c.name}`" for c in recipe.conditioners) or "nothing")
        + f" ({classes}), with " + (f"`{recipe.guidance.name}` guidance." if recipe.guidance else "no guidance."),
        "",
        "## Data",
        "",
        f"- training clips: `{recipe.data.train.name}` ({_options(recipe.data.train.dump())})",
        f"- clips encoded for training: {meta.get('count', '?')}, latent shape {meta.get('latent_shape', '?')}, "
        f"latent scale {float(meta.get('scale', 1.0)):.6g}",
        f"- frame rates seen (FPS): {', '.join(f'{f:g}' for f in fps_values) or 'none recorded'}",
    ]
    if class_names:
        lines.append(f"- classes ({len(class_names)}): " + ", ".join(f"{i}: {n}" for i, n in enumerate(class_names)))
    elif num_classes:
        lines.append(f"- classes: {num_classes} (indices 0 to {num_classes - 1}, unnamed)")
    lines += [
        "",
        "## Recipe",
        "",
        "The run's full resolved recipe is `recipe.yaml` (for reference; loading does not read it).",
        "",
        "| part | component | provided by |",
        "|---|---|---|",
    ]
    lines += [f"| {_cell(part)} | `{_cell(name)}` ({_cell(kind)}) | "
              f"{'registered in-process' if provider == IN_PROCESS else _cell(provider)} |"
              for part, kind, name, provider in components]
    lines += ["", "| training stage | steps | batch size | EMA | final values |", "|---|---|---|---|---|"]
    for stage in ("tokenizer", "denoiser"):
        info = records.get(stage) or {}
        settings = getattr(recipe.train, stage)
        if stage == "tokenizer" and info.get("trained") is False:
            lines.append("| tokenizer | nothing to learn | | | |")
            continue
        final = info.get("final") or {}
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in sorted(final.items())
                          if isinstance(v, (int, float)) and not isinstance(v, bool) and not _bookkeeping(k))
        lines.append(f"| {stage} | {info.get('steps', settings.steps)} | {settings.batch_size} | "
                     f"{settings.ema_decay if settings.ema_decay is not None else 'off'} | {shown} |")
    s = recipe.sample
    sampler = next((name for part, _, name, _ in components if part == "sampler"), None)
    lines += [
        "",
        f"Default sampling (the recipe's `sample` section, in `system.json`): {s.steps or 'all'} steps, "
        + (f"the `{sampler}` sampler (`sampler/config.json`)" if sampler else "the schedule's default sampler")
        + ", guidance scale "
        + (f"{s.guidance_scale:g}" if s.guidance_scale is not None else "of the guidance component")
        + ".",
        "",
        "## Metrics",
        "",
    ]
    lines += _metrics_lines(metrics)
    first_fps = repr(fps_values[0]) if fps_values else "8.0"
    num = 2
    labels = ", ".join(str(i % num_classes) for i in range(num)) if num_classes else ""
    call = (f"labels=[{labels}], " if num_classes else "") + f"fps=[{first_fps}] * {num}"
    plugins = sorted({provider for *_, provider in components if provider != IN_PROCESS})
    in_process = [f"`{name}`" for _, _, name, provider in components if provider == IN_PROCESS]
    lines += [
        "",
        "## Use",
        "",
        "Install vqvdm and the plug-ins that provide the components (" + ", ".join(plugins) + ")"
        + (f"; register {', '.join(in_process)} as the exporting process did (`vqvdm_core.register`)"
           if in_process else "")
        + ". Loading checks every file against the sha256 in `model_index.json` and reads only JSON and "
        "safetensors.",
        "",
        "```python",
        "import torch",
        "from vqvdm_core.system import LatentVideoDiffusion",
        "",
        f'system = LatentVideoDiffusion.from_pretrained("{folder_name}")',
        f"video = system.sample({num}, {call}, steps={s.steps or 100},",
        "                      generator=torch.Generator().manual_seed(0))  # (N, 3, T, H, W) in [-1, 1]",
        "```",
        "",
        "or from the command line (the same options as for a run directory):",
        "",
        "```",
        f"vqvdm sample {folder_name}" + (" --label 0" if num_classes else "") + " --num 4 --out samples.mp4",
        "```",
        "",
        "## Files",
        "",
        "- `model_index.json`: format version, vqvdm version, each component's registered name and files, "
        "and the sha256 of every other file",
        "- `system.json`: clip shape, latent scale, classes and FPS values seen, default sample settings",
        "- `<component>/config.json` and `<component>/weights.safetensors`: each component's resolved config "
        "and weights",
        "- `recipe.yaml`: the run's recipe; `metrics.json`: the evaluate stage's report (when measured)",
        "",
        "## Sharing",
        "",
        "To put this folder on the Hugging Face Hub: `pip install vqvdm[hub]` (or `huggingface_hub`), then",
        "",
        "```python",
        "from huggingface_hub import upload_folder",
        "",
        f'upload_folder(folder_path="{folder_name}", repo_id="<user>/<model>", repo_type="model")',
        "```",
        "",
        "and download it with `huggingface_hub.snapshot_download(\"<user>/<model>\")` before `from_pretrained`. "
        "Any changed file (this card included) fails the sha256 check: edit the card before exporting, or "
        "export again.",
        "",
    ]
    return "\n".join(lines)


def _bookkeeping(key: str) -> bool:
    """Training log values that say nothing about the model (speed, counters, learning rates)."""
    return key in ("epoch", "step", "time", "it_per_s") or key.startswith(("lr/", "grad_norm"))


def _metrics_lines(metrics: Mapping[str, Any] | None) -> list[str]:
    results = (metrics or {}).get("results") or []
    if not results:
        return ["No evaluation was recorded for this run (its evaluate stage did not run for this recipe)."]
    lines = [f"Measured by the run's evaluate stage (real set: {metrics.get('real_set', '?')}; full report "
             "with each metric's protocol in `metrics.json`):", "",
             "| guidance scale | clips | steps | metric | value |", "|---|---|---|---|---|"]
    for res in results:
        scale = res.get("guidance_scale")
        head = (f"{_cell('-' if scale is None else scale)} | {_cell(res.get('num_samples', '?'))} | "
                f"{_cell(res.get('steps') or 'all')}")
        for name, values in (res.get("values") or {}).items():
            for key, value in (values or {}).items():
                lines.append(f"| {head} | {_cell(name)}/{_cell(key)} | {_cell(value)} |")
        if "latent_std_ratio" in res:
            lines.append(f"| {head} | latent_std_ratio | {_cell(res['latent_std_ratio'])} |")
    return lines

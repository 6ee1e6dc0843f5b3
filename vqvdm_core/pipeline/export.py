"""``vqvdm export RUN OUT_DIR``: a trained run as a self-contained pipeline folder.

The folder (:mod:`vqvdm_core.system.pretrained`) holds the trained tokenizer and denoiser with every
other component's resolved config, the latent scale, the classes and FPS values seen in training,
the recipe's sample settings and default sampler, the run's recipe and evaluate report, an index
with every file's sha256, and a ``README.md`` model card. ``LatentVideoDiffusion.from_pretrained``
and ``vqvdm sample OUT_DIR`` load it without the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from vqvdm_core.errors import UserError

__all__ = ["EXPORT_STAGES", "export_run"]

EXPORT_STAGES = ("tokenizer", "latents", "denoiser")
"""Stages whose outputs an export needs (the tokenizer's only when it has weights)."""


def export_run(run: str | Path, out: str | Path, *, force: bool = False,
               console: Console | None = None) -> Path:
    """Export the run at ``run`` (a run directory or a file inside one) to the folder ``out``.

    Refused, before anything is written, when a needed stage has not finished for the run's
    recipe, or when ``out`` exists and is not empty (``force`` replaces a pipeline folder there,
    never anything else). Built on the CPU. Returns ``out``.
    """
    from vqvdm_core import __version__
    from vqvdm_core.pipeline import open_run
    from vqvdm_core.pipeline.model_card import model_card
    from vqvdm_core.system.pretrained import check_target, component_slots, registered_entry

    out = check_target(out, overwrite=force)
    ctx = open_run(Path(run), ["device=cpu"], console=console or Console(quiet=True))
    recipe, run_dir = ctx.recipe, ctx.run
    if out.resolve() == run_dir.path.resolve() or run_dir.path.resolve() in out.resolve().parents:
        raise UserError(f"cannot export into the run directory {run_dir.path}: give a folder outside it")
    unfinished = []
    for stage in EXPORT_STAGES:
        try:
            run_dir.require(stage)
        except UserError as exc:
            if stage == "tokenizer" and run_dir.record(stage) is None and not _tokenizer_has_weights(recipe):
                continue  # e.g. the identity tokenizer: nothing was trained, nothing to export
            unfinished.append(f"{exc}")
    if unfinished:
        raise UserError(f"cannot export {run_dir.path}: " + "; ".join(unfinished))

    meta = ctx.latents_meta()
    system = ctx.system(trained=True)
    system.sampler = system.resolve_sampler(recipe.sample.sampler)
    system.data_info = {
        "num_classes": int(meta.get("num_classes", 0)),
        "class_names": [str(n) for n in meta.get("class_names") or []],
        "fps_values": [float(f) for f in meta.get("fps_values") or []],
    }
    if meta.get("condition_values"):  # other conditioner fields' values seen (a plug-in's "motion"...)
        system.data_info["condition_values"] = {str(k): [float(v) for v in values]
                                                for k, values in meta["condition_values"].items()}
    system.sample_settings = recipe.sample.model_dump(mode="json", exclude={"sampler"})

    records = {stage: (rec.info or {}) for stage in EXPORT_STAGES if (rec := run_dir.record(stage)) is not None}
    metrics = _evaluate_report(run_dir)
    components = []
    for slot, kind, obj in component_slots(system):
        part = slot.replace("/", ".")
        entry = registered_entry(kind, obj, system.registry, what=part)
        provider = entry.distribution if not entry.version else f"{entry.distribution} {entry.version}"
        components.append((part, kind, entry.name, provider))
    card = model_card(recipe=recipe, meta=meta, records=records, metrics=metrics, components=components,
                      version=__version__, folder_name=out.name)
    extra: dict[str, str | bytes] = {"README.md": card, "recipe.yaml": (run_dir.path / "recipe.yaml").read_bytes()}
    if metrics is not None:
        extra["metrics.json"] = (run_dir.stage_dir("evaluate") / "metrics.json").read_bytes()
    return system.save_pretrained(out, overwrite=force, extra_files=extra)  # type: ignore[no-any-return]


def _tokenizer_has_weights(recipe: Any) -> bool:
    return bool(recipe.tokenizer.build("tokenizer").trainable)


def _evaluate_report(run_dir: Any) -> dict[str, Any] | None:
    """The evaluate stage's report when that stage finished for the run's recipe (else None)."""
    import json

    try:
        run_dir.require("evaluate")
        report = json.loads((run_dir.stage_dir("evaluate") / "metrics.json").read_text())
    except (UserError, OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None

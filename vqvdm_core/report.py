"""``runs/<name>/report.html``: one page with everything a person wants to look at after a run.

An overview (components, stages, timings), the sample grid, the metrics with their protocol, each
training stage's last validation media, loss curves and final values, the hardware and the resolved
recipe. Media are linked relative to the run directory, so the folder can be copied or served as is.
Small pixel media (a grid of 32x32 clips) are shown enlarged by a whole factor, never blurred.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

STAGES = ("tokenizer", "latents", "denoiser", "sample", "evaluate")

MEDIA_BOX = (640, 720)
"""Pixel media are enlarged by the largest whole factor (at most 4) that fits this width x height."""
MAX_ZOOM = 4


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_recipe(run: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((run / "recipe.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _rel(run: Path, path: Path) -> str:
    return html.escape(path.relative_to(run).as_posix())


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - an unreadable file is shown without a size
        return None


def _figure(run: Path, path: Path, caption: str | None = None) -> str:
    if path.suffix == ".mp4":
        tag = f'<video src="{_rel(run, path)}" controls loop muted></video>'
    else:
        size = _image_size(path)
        attrs = ""
        if size is not None:
            w, h = size
            zoom = max(1, min(MAX_ZOOM, MEDIA_BOX[0] // max(w, 1), MEDIA_BOX[1] // max(h, 1)))
            pixel = ' class="pixel"' if zoom > 1 else ""
            attrs = f' width="{w * zoom}" height="{h * zoom}"{pixel}'
        tag = f'<img src="{_rel(run, path)}" alt="{_esc(path.name)}"{attrs}>'
    text = _esc(caption) + f" <code>{_esc(path.name)}</code>" if caption else f"<code>{_esc(path.name)}</code>"
    return f"<figure>{tag}<figcaption>{text}</figcaption></figure>"


def _media_row(run: Path, items: list[tuple[Path, str]]) -> str:
    figures = [_figure(run, p, c) for p, c in items if p.is_file()]
    return f"<div class='media'>{''.join(figures)}</div>" if figures else ""


def _table(rows: list[list[str]], header: list[str] | None = None, *, cls: str = "") -> str:
    head = ("<thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr></thead>") if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}>{head}<tbody>{body}</tbody></table>"


def _values(title: str, values: dict[str, Any]) -> str:
    """Name/value pairs flowing in columns (a long list stays short on the page)."""
    items = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(_fmt(v))}</dd>" for k, v in values.items())
    return f"<h4>{_esc(title)}</h4><dl class='values'>{items}</dl>" if items else ""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _component_names(recipe: dict[str, Any]) -> list[list[str]]:
    def name(node: Any) -> str:
        return str(node.get("name", "?")) if isinstance(node, dict) else str(node)

    rows = []
    for key in ("tokenizer", "denoiser", "schedule", "guidance"):
        if key in recipe:
            rows.append([key, name(recipe[key])])
    conds = recipe.get("conditioners")
    if isinstance(conds, list):
        rows.insert(3, ["conditioners", ", ".join(name(c) for c in conds) or "none (unconditional)"])
    data = recipe.get("data") or {}
    for split in ("train", "val"):
        node = data.get(split)
        if isinstance(node, dict):
            rows.append([f"data.{split}", f"{name(node)} ({node.get('frames', '?')} frames, "
                                           f"{node.get('size', '?')}x{node.get('size', '?')})"])
    return rows


def _stage_summary(stage: str, info: dict[str, Any]) -> str:
    if stage == "tokenizer":
        return f"{info['steps']} steps" if info.get("trained") else "nothing to train"
    if stage == "latents" and "count" in info:
        shape = "x".join(str(s) for s in info.get("latent_shape", []))
        return f"{info['count']} latents of {shape}, scale {_fmt(float(info.get('scale', 0.0)))}"
    if stage == "denoiser" and "steps" in info:
        return f"{info['steps']} steps"
    if stage == "sample" and "count" in info:
        return f"{info['count']} clips"
    if stage == "evaluate" and info.get("results"):
        return ", ".join(f"w={_fmt(r.get('guidance_scale'))}: {r.get('num_samples')} samples"
                         for r in info["results"])
    return ""


def _overview(run: Path, recipe: dict[str, Any]) -> str:
    rows = []
    for stage in STAGES:
        rec = _read_json(run / stage / "stage.json")
        if not rec:
            rows.append([stage, "not run", "-", ""])
            continue
        info = rec.get("info") or {}
        seconds = info.get("seconds")
        rows.append([stage, rec.get("status", "?"),
                     f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "-",
                     _stage_summary(stage, info)])
    return ("<div class='columns'>"
            + "<div><h3>System</h3>" + _table(_component_names(recipe), cls="kv") + "</div>"
            + "<div><h3>Stages</h3>" + _table(rows, ["stage", "status", "seconds", "result"]) + "</div>"
            + "</div>")


def _samples_section(run: Path) -> str:
    grid = run / "sample" / "grid.gif"
    if not grid.is_file():
        return "<p>No samples yet.</p>"
    conditions = _read_json(run / "sample" / "conditions.json") or {}
    labels = conditions.get("labels") or []
    if labels and all(label == -1 for label in labels):
        caption = f"{len(labels)} unconditional samples"
    else:
        caption = f"{len(labels)} samples; a row per class, across: FPS values x clips per condition"
    return _media_row(run, [(grid, caption)])


def _metrics_section(run: Path) -> str:
    report = _read_json(run / "evaluate" / "metrics.json")
    if not report:
        return "<p>No evaluation yet.</p>"
    protocol = report.get("protocol", {})
    parts = []
    for res in report.get("results", []):
        rows = []
        for name, values in res.get("values", {}).items():
            comparable = (protocol.get(name) or {}).get("paper_comparable")
            note = "" if comparable is None else ("comparable to the paper" if comparable else "not comparable")
            for i, (key, value) in enumerate(values.items()):
                rows.append([f"{name}/{key}" if key != name else name, _fmt(value), "" if i else note])
        if "latent_std_ratio" in res:
            rows.append(["latent_std_ratio", _fmt(res["latent_std_ratio"]),
                         "generated / training latent std (near 1)"])
        title = (f"guidance w = {_fmt(res.get('guidance_scale'))}: {res.get('num_samples')} samples, "
                 f"{res.get('steps')} steps ({res.get('sampler')})")
        parts.append(f"<h4>{_esc(title)}</h4>" + _table(rows, ["metric", "value", "protocol"]))
    text = html.escape(json.dumps(protocol, indent=2))
    parts.append(f"<details><summary>protocol of each metric (real set: {_esc(report.get('real_set', '?'))})"
                 f"</summary><pre>{text}</pre></details>")
    return "".join(parts)


def _training_section(run: Path, stage: str, media: list[tuple[Path, str]]) -> str:
    if not (run / stage / "stage.json").is_file():
        return "<p>Not run yet.</p>"
    final = _read_json(run / stage / "metrics.json") or {}
    numbers = {k: v for k, v in final.items() if isinstance(v, (int, float))}
    val = {k: v for k, v in numbers.items() if k.startswith("val/")}
    train = {k: v for k, v in numbers.items() if not k.startswith("val/")}
    return (_media_row(run, media)
            + _values("last validation", val)
            + _values("last training step", train))


def _last(paths: list[Path]) -> list[Path]:
    return sorted(paths)[-1:]


def build_report(run: Path) -> Path:
    """Write ``run/report.html`` from whatever the run has produced so far; return its path."""
    run = Path(run)
    recipe = _read_recipe(run)
    recipe_text = (run / "recipe.yaml").read_text() if (run / "recipe.yaml").is_file() else ""
    env = _read_json(run / "environment.json") or {}
    tok_media = [(p, "reconstructions at the last validation (left: input, right: reconstruction)")
                 for p in _last(list((run / "tokenizer" / "val").glob("recon_step*.gif")))]
    tok_media.append((run / "tokenizer" / "loss_curves.png", "training curves"))
    den_media = [(p, "samples at the last validation")
                 for p in _last(list((run / "denoiser" / "val").glob("samples_step*.gif")))]
    den_media.append((run / "denoiser" / "loss_curves.png", "training curves"))
    sections = [
        f"<h1>Run <code>{_esc(run.name)}</code></h1>",
        "<h2>Overview</h2>", _overview(run, recipe),
        "<h2>Samples</h2>", _samples_section(run),
        "<h2>Metrics</h2>", _metrics_section(run),
        "<h2>Tokenizer</h2>", _training_section(run, "tokenizer", tok_media),
        "<h2>Denoiser</h2>", _training_section(run, "denoiser", den_media),
        "<h2>Hardware</h2>", _table([[k, str(v)] for k, v in env.items()], cls="kv"),
        "<h2>Recipe</h2>",
        f"<details><summary>resolved recipe, every default filled ({len(recipe_text.splitlines())} lines of "
        f"<code>recipe.yaml</code>)</summary><pre>{html.escape(recipe_text)}</pre></details>",
    ]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vqvdm run {_esc(run.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }}
h3, h4 {{ margin: 0.8rem 0 0.4rem; }}
table {{ border-collapse: collapse; margin: 0.3rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
table.kv td:first-child {{ font-weight: 600; }}
.columns {{ display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }}
.media {{ display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }}
figure {{ margin: 0; display: table; }}  /* the caption wraps at the media's width */
figcaption {{ display: table-caption; caption-side: bottom; text-align: left; font-size: 0.85rem; color: #555; margin-top: 0.3rem; }}
img, video {{ max-width: 100%; height: auto; }}
img.pixel {{ image-rendering: pixelated; }}
dl.values {{ display: grid; grid-template-columns: repeat(4, max-content minmax(6rem, max-content));
             gap: 0.2rem 0.8rem; margin: 0.3rem 0 1rem; font-size: 0.9rem; }}
dl.values dt {{ color: #555; }}
dl.values dd {{ margin: 0; font-variant-numeric: tabular-nums; }}
pre {{ background: #f6f6f6; padding: 0.8rem; overflow: auto; }}
summary {{ cursor: pointer; }}
</style></head><body>
{''.join(sections)}
</body></html>
"""
    out = run / "report.html"
    out.write_text(page)
    return out

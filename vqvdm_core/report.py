"""``runs/<name>/report.html``: one page with everything a person wants to look at after a run.

The recipe, the sample grids, reconstructions, loss curves, metrics, stage timings and the hardware.
Media are linked relative to the run directory, so the folder can be copied or served as is.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

STAGES = ("tokenizer", "latents", "denoiser", "sample", "evaluate")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(run: Path, path: Path) -> str:
    return html.escape(path.relative_to(run).as_posix())


def _media(run: Path, paths: list[Path], caption: str) -> str:
    items = []
    for p in paths:
        tag = (f'<video src="{_rel(run, p)}" controls loop muted></video>' if p.suffix == ".mp4"
               else f'<img src="{_rel(run, p)}" alt="{html.escape(p.name)}">')
        items.append(f"<figure>{tag}<figcaption>{html.escape(p.name)}</figcaption></figure>")
    if not items:
        return ""
    return f"<h3>{html.escape(caption)}</h3><div class='media'>{''.join(items)}</div>"


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics_section(run: Path) -> str:
    report = _read_json(run / "evaluate" / "metrics.json")
    if not report:
        return "<p>No evaluation yet.</p>"
    rows = []
    for res in report.get("results", []):
        for name, values in res.get("values", {}).items():
            for key, value in values.items():
                rows.append([_fmt(res.get("guidance_scale")), f"{name}/{key}", _fmt(value),
                             str(res.get("num_samples")), str(res.get("steps"))])
    protocol = html.escape(json.dumps(report.get("protocol", {}), indent=2))
    return (_table(rows, ["guidance", "metric", "value", "samples", "steps"])
            + f"<details><summary>protocol</summary><pre>{protocol}</pre></details>")


def _validation_section(run: Path, stage: str) -> str:
    final = _read_json(run / stage / "metrics.json") or {}
    rows = [[k, _fmt(v)] for k, v in sorted(final.items()) if isinstance(v, (int, float))]
    return _table(rows, ["value", ""]) if rows else ""


def build_report(run: Path) -> Path:
    """Write ``run/report.html`` from whatever the run has produced so far; return its path."""
    run = Path(run)
    recipe_text = (run / "recipe.yaml").read_text() if (run / "recipe.yaml").is_file() else ""
    env = _read_json(run / "environment.json") or {}
    timing_rows = []
    for stage in STAGES:
        rec = _read_json(run / stage / "stage.json")
        if rec:
            seconds = (rec.get("info") or {}).get("seconds")
            timing_rows.append([stage, rec.get("status", "?"),
                                f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "-"])
    sections = [
        f"<h1>Run {html.escape(run.name)}</h1>",
        "<h2>Samples</h2>",
        _media(run, sorted((run / "sample").glob("grid.gif")), "sample grid (rows: classes, columns: FPS)")
        or "<p>No samples yet.</p>",
        "<h2>Metrics</h2>", _metrics_section(run),
        "<h2>Tokenizer</h2>",
        _validation_section(run, "tokenizer"),
        _media(run, sorted((run / "tokenizer" / "val").glob("recon_step*.gif"))[-1:],
               "reconstructions (left: input, right: reconstruction), last validation"),
        _media(run, sorted((run / "tokenizer").glob("loss_curves.png")), "tokenizer losses"),
        "<h2>Denoiser</h2>",
        _validation_section(run, "denoiser"),
        _media(run, sorted((run / "denoiser" / "val").glob("samples_step*.gif"))[-1:],
               "samples at the last validation"),
        _media(run, sorted((run / "denoiser").glob("loss_curves.png")), "denoiser losses"),
        "<h2>Timings</h2>", _table(timing_rows, ["stage", "status", "seconds"]),
        "<h2>Hardware</h2>", _table([[k, str(v)] for k, v in env.items()], ["", ""]),
        "<h2>Recipe</h2>", f"<pre>{html.escape(recipe_text)}</pre>",
    ]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vqvdm run {html.escape(run.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }}
.media {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }} img, video {{ max-width: 100%; image-rendering: pixelated; min-width: 24rem; }}
pre {{ background: #f6f6f6; padding: 0.8rem; overflow: auto; }}
</style></head><body>
{''.join(sections)}
</body></html>
"""
    out = run / "report.html"
    out.write_text(page)
    return out

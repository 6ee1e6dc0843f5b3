"""``runs/<name>/report.html``: one page that answers "did it learn, and what do the samples look like".

From top to bottom: an overview (components, stages, timings); the samples, one playing clip per
cell of a table with a row per class and a column per FPS value (captions in HTML, never cut), with
the sampler that drew them (its settings, steps and denoiser calls); the metrics of each guidance
scale with the sampler they were scored with; for the tokenizer, held-out clips above their
reconstructions as strips of frames; for the denoiser, its validation samples with their
conditions; each training stage's curves (one panel per logged quantity, validation results as
markers on the matching training curve) and final values; the hardware and the resolved recipe.
Every video file (GIF, MP4) of the samples and reconstructions is linked next to its pictures.

Paths are relative to the run directory, and the pictures the report derives (single clips cut from
a grid, frame strips, redrawn curves) are written to ``report_files/`` inside it
(:mod:`vqvdm_core.reporting.media`), so the folder can be copied or served as is. Small pixel media
are enlarged by a whole factor, never blurred. A part of the run that is missing or made by an
older version is shown as well as it can be (the stage's own grid image, its own plot).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from vqvdm_core.io.atomic import atomic_write

STAGES = ("tokenizer", "latents", "denoiser", "sample", "evaluate")

MEDIA_BOX = (640, 720)
"""Pixel media are enlarged by the largest whole factor (at most 4) that fits this width x height."""
MAX_ZOOM = 4
PAGE_WIDTH = 1100
"""CSS pixels a table of clips or a strip of frames may take (the page body: 72rem = 1152 px, less padding)."""
MAX_SAMPLE_ROWS = 16
"""Classes shown in the table of samples (the grid files hold them all)."""
RECON_CLIPS = 4
"""Held-out clips shown as input/reconstruction strips."""
STRIP_FRAMES = 8
"""Frames per strip, spread over the clip."""


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


def _fit(width: int, height: int, per_row: int, *, limit: int = MAX_ZOOM,
         room: int = PAGE_WIDTH) -> tuple[int, int, bool]:
    """Display size of ``per_row`` pictures of ``width`` x ``height`` side by side (a few pixels of
    spacing each) in ``room`` CSS pixels: enlarged by the largest whole factor up to ``limit`` (drawn
    pixelated), or shrunk to fit when even their own size is too wide. ``(width, height, pixelated)``."""
    need = max(1, per_row * (width + 8))
    zoom = min(limit, room // need)
    if zoom >= 1:
        return width * zoom, height * zoom, zoom > 1
    shrunk = max(1, room // per_row - 8)
    return shrunk, max(1, round(height * shrunk / width)), False


def _img(run: Path, path: Path, size: tuple[int, int, bool], alt: str) -> str:
    width, height, pixelated = size
    pixel = " class='pixel'" if pixelated else ""
    return (f'<img src="{_rel(run, path)}" alt="{_esc(alt)}" title="{_esc(alt)}" width="{width}" '
            f'height="{height}"{pixel}>')


def _links(run: Path, paths: list[Path], lead: str = "files") -> str:
    """Links to ``paths`` (those that exist), e.g. every video file of a grid."""
    items = [f'<a href="{_rel(run, p)}">{_esc(p.name)}</a>' for p in paths if p.is_file()]
    return f"<p class='files'>{_esc(lead)}: {' &middot; '.join(items)}</p>" if items else ""


def _videos(folder: Path, stem: str) -> list[Path]:
    """Every video file of one grid: ``stem.gif``, ``stem.mp4``, ... (GIF first)."""
    return sorted((p for p in folder.glob(f"{stem}.*") if p.suffix in (".gif", ".mp4", ".mkv", ".webm")),
                  key=lambda p: (p.suffix != ".gif", p.suffix))


def _sampler_text(node: Any, schedule: Any, recorded: Any = None) -> str:
    """What drew the clips: a recipe's sampler node with its settings (``dpmpp_2m (spacing
    trailing, eta 1)``); for a node left null, the label the stage recorded, or the schedule's default."""
    if isinstance(node, dict) and node.get("name"):
        options = ", ".join(f"{k} {_fmt(v)}" for k, v in node.items() if k != "name")
        return f"{node['name']} ({options})" if options else str(node["name"])
    if isinstance(node, str) and node:
        return node
    if recorded and recorded not in ("default", "none"):
        return str(recorded)
    name = schedule.get("sampler") if isinstance(schedule, dict) else None
    return f"{name} (the schedule's default)" if name else "the schedule's default"


def _clip_height(meta: dict[str, Any]) -> int | None:
    """The height of the data's clips, from the latents stage's record (None when not recorded)."""
    shape = meta.get("clip_shape")
    return int(shape[1]) if isinstance(shape, list) and len(shape) == 3 else None


def _class_name(meta: dict[str, Any], label: int, caption: str, fps: float) -> str:
    if label < 0:
        return "unconditional"
    names = meta.get("class_names") or []
    if label < len(names):
        return str(names[label])
    suffix = f" {fps:g} fps"
    return caption[:-len(suffix)] if caption.endswith(suffix) and len(caption) > len(suffix) else f"class {label}"


def validation_conditions(meta: dict[str, Any], count: int, fps: list[float] | None) -> list[tuple[int, float, str]]:
    """``(label, fps, caption)`` of the denoiser stage's validation clips: every class and FPS value
    cycled through (the sample stage's FPS values, else the data's), as
    :func:`vqvdm_core.pipeline.conditions.cycle` draws them (kept free of torch for a quick report)."""
    fps_values = list(fps) if fps else list(meta.get("fps_values") or [])
    num_classes = int(meta.get("num_classes") or 0)
    labels = list(range(num_classes)) if num_classes else [-1]
    names = meta.get("class_names") or []
    base = []
    for label in labels:
        for value in fps_values:
            parts = [] if label < 0 else [names[label] if label < len(names) else f"class {label}"]
            base.append((label, float(value), " ".join(parts + [f"{float(value):g} fps"])))
    if not base:
        return []
    extra = {k: list(v) for k, v in (meta.get("condition_values") or {}).items() if v}  # other fields, cycled
    return [(*base[i % len(base)][:2], " ".join([base[i % len(base)][2],
                                                 *(f"{k} {float(v[i % len(v)]):g}" for k, v in extra.items())]))
            for i in range(count)]


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
        if recipe.get(key) is not None:
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


def _samples_section(run: Path, recipe: dict[str, Any], meta: dict[str, Any]) -> str:
    folder = run / "sample"
    grid = folder / "grid.gif"
    files = _links(run, _videos(folder, "grid") + [folder / "samples.safetensors"],
                   "the same clips in one file")
    if not grid.is_file():
        return files or "<p>No samples yet.</p>"
    conditions = _read_json(folder / "conditions.json")
    conditions = conditions if isinstance(conditions, dict) else {}
    labels, fps = list(conditions.get("labels") or []), list(conditions.get("fps") or [])
    captions = list(conditions.get("captions") or [])
    if not captions and len(labels) == len(fps):  # not recorded: made from the classes and FPS values
        captions = [f"{_class_name(meta, int(label), '', float(f))} {float(f):g} fps" for label, f in zip(labels, fps)]
    settings = _sample_settings(run, recipe)
    table = None
    if labels and len(labels) == len(fps) == len(captions):
        table = _samples_table(run, grid, recipe, meta, labels, fps, captions)
    if table is None:  # no conditions on record or a grid of another layout: the stage's own grid
        unconditional = labels and all(label == -1 for label in labels)
        caption = (f"{len(labels)} unconditional samples" if unconditional
                   else f"{len(labels)} samples; a row per class, across: FPS values x clips per condition")
        return settings + _media_row(run, [(grid, caption)]) + files
    return settings + table + files


def _sample_settings(run: Path, recipe: dict[str, Any]) -> str:
    """One line: the sampler (with its settings), steps, denoiser calls, guidance, seed of the samples."""
    sample = recipe.get("sample") if isinstance(recipe.get("sample"), dict) else {}
    evaluate = recipe.get("evaluate") if isinstance(recipe.get("evaluate"), dict) else {}
    guidance = recipe.get("guidance") if isinstance(recipe.get("guidance"), dict) else {}
    if not sample:
        return ""
    parts = [f"sampler <b>{_esc(_sampler_text(sample.get('sampler'), recipe.get('schedule')))}</b>"]
    steps = sample.get("steps")
    parts.append(f"{_esc(steps)} steps" if steps is not None else "the schedule's full chain")
    # The evaluate stage records the denoiser calls of its sampler: the same here for the same settings.
    report = _read_json(run / "evaluate" / "metrics.json")
    results = report.get("results") if isinstance(report, dict) else None
    calls = [r.get("denoiser_calls") for r in results or [] if isinstance(r, dict) and r.get("denoiser_calls")]
    if calls and sample.get("sampler") == evaluate.get("sampler") and steps == evaluate.get("steps"):
        parts.append(f"{_esc(calls[0])} denoiser calls per clip")
    scale = sample.get("guidance_scale")
    scale = guidance.get("scale") if scale is None else scale
    if guidance.get("name"):
        parts.append(f"guidance {_esc(guidance['name'])}"
                     + (f" w = {_esc(_fmt(scale))}" if scale is not None else ""))
    if recipe.get("seed") is not None:
        parts.append(f"seed {_esc(recipe['seed'])}")
    return f"<p class='settings'>{', '.join(parts)}</p>"


def _samples_table(run: Path, grid: Path, recipe: dict[str, Any], meta: dict[str, Any], labels: list[int],
                   fps: list[float], captions: list[str]) -> str | None:
    """A row per class, a column per FPS value: each cell one clip of the grid, playing. None when the
    grid's size does not match the recorded conditions (then the grid is shown whole)."""
    from vqvdm_core.reporting import media as report_media
    from vqvdm_core.io.video import grid_cells

    sample = recipe.get("sample") if isinstance(recipe.get("sample"), dict) else {}
    per_condition = sample.get("per_condition")
    if not isinstance(per_condition, int) or per_condition < 1:  # the run of the first (label, fps) pair
        per_condition = next((i for i, pair in enumerate(zip(labels, fps)) if pair != (labels[0], fps[0])),
                             len(labels))
    nrow = max(1, len(set(fps)) * per_condition)  # as the sample stage tiles its grid
    size = _image_size(grid)
    if size is None:
        return None
    try:
        boxes = grid_cells(size[1], size[0], nrow=nrow, count=len(labels), clip_height=_clip_height(meta),
                           labelled=True)
    except ValueError:
        return None
    rows: dict[int, list[int]] = {}
    for k, label in enumerate(labels):
        rows.setdefault(int(label), []).append(k)
    shown = list(rows.items())[:MAX_SAMPLE_ROWS]
    keep = [k for _, ks in shown for k in ks]
    try:
        gifs = dict(zip(keep, report_media.clip_gifs(grid, run / report_media.FOLDER / "sample", boxes, keep)))
    except (OSError, ValueError):
        return None
    _, _, h, w = boxes[0]
    size = _fit(w, h, max(len(ks) for _, ks in shown), room=PAGE_WIDTH - 140)
    first = [fps[k] for k in shown[0][1]]
    same_columns = all([fps[k] for k in ks] == first for _, ks in shown)
    head = ""
    if same_columns:  # one header per FPS value, over its clips
        spans: list[list[Any]] = []
        for value in first:
            if spans and spans[-1][0] == value:
                spans[-1][1] += 1
            else:
                spans.append([value, 1])
        head = ("<thead><tr><th class='corner'>class \\ FPS</th>"
                + "".join(f"<th class='cond' colspan='{n}'>{_esc(f'{v:g} fps')}</th>" for v, n in spans)
                + "</tr></thead>")
    body = []
    for label, ks in shown:
        name = _class_name(meta, label, captions[ks[0]], fps[ks[0]])
        cells = []
        for k in ks:
            img = _img(run, gifs[k], size, captions[k])
            cap = "" if same_columns else f"<figcaption class='cond'>{_esc(captions[k])}</figcaption>"
            cells.append(f"<td><figure>{img}{cap}</figure></td>")
        body.append(f"<tr><th class='cond' scope='row'>{_esc(name)}</th>{''.join(cells)}</tr>")
    more = len(rows) - len(shown)
    note = (f"{len(labels)} samples: a row per class, a column per FPS value"
            + (f" ({per_condition} clips each)" if per_condition > 1 else "")
            + (f"; the first {len(shown)} of {len(rows)} classes (all of them in the files below)" if more else ""))
    return f"<table class='samples'><caption>{_esc(note)}</caption>{head}<tbody>{''.join(body)}</tbody></table>"


def _metrics_section(run: Path, recipe: dict[str, Any]) -> str:
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
        title = f"guidance w = {_fmt(res.get('guidance_scale'))}: {res.get('num_samples')} samples"
        parts.append(f"<h4>{_esc(title)}</h4>" + _scoring_settings(res, recipe)
                     + _table(rows, ["metric", "value", "protocol"]))
    text = html.escape(json.dumps(protocol, indent=2))
    parts.append(f"<details><summary>protocol of each metric (real set: {_esc(report.get('real_set', '?'))})"
                 f"</summary><pre>{text}</pre></details>")
    return "".join(parts)


def _scoring_settings(res: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The sampler that drew the scored clips (settings from the recipe), its steps and denoiser calls."""
    if "samples" in res:  # clips scored from a samples file
        return f"<p class='settings'>clips of <code>{_esc(res['samples'])}</code></p>"
    evaluate = recipe.get("evaluate") if isinstance(recipe.get("evaluate"), dict) else {}
    if evaluate:
        text = _sampler_text(evaluate.get("sampler"), recipe.get("schedule"), res.get("sampler"))
    else:  # no recipe to read: what the stage recorded
        text = str(res.get("sampler") or "?")
    parts = [f"sampler <b>{_esc(text)}</b>"]
    if res.get("steps") is not None:
        parts.append(f"{_esc(res['steps'])} steps")
    if res.get("denoiser_calls") is not None:
        parts.append(f"{_esc(res['denoiser_calls'])} denoiser calls per clip")
    if isinstance(res.get("seconds"), (int, float)):
        parts.append(f"{res['seconds']:.1f} s")
    return f"<p class='settings'>{', '.join(parts)}</p>"


def _training_section(run: Path, stage: str, media: str) -> str:
    if not (run / stage / "stage.json").is_file():
        return "<p>Not run yet.</p>"
    from vqvdm_core.reporting import media as report_media

    final = _read_json(run / stage / "metrics.json") or {}
    numbers = {k: v for k, v in final.items() if isinstance(v, (int, float))}
    val = {k: v for k, v in numbers.items() if k.startswith("val/")}
    train = {k: v for k, v in numbers.items() if not k.startswith("val/")}
    try:
        curves = report_media.curves(run, stage)
    except Exception:  # noqa: BLE001 - a plot that cannot be drawn leaves the stage's own one
        curves = run / stage / "loss_curves.png"
    plot = ""
    if curves is not None and curves.is_file():
        plot = ("<figure class='curves'>" + f'<img src="{_rel(run, curves)}" alt="{_esc(stage)} training curves">'
                + "<figcaption>training curves: a panel per logged quantity, each on its own scale (log where "
                "it spans a decade or more); validation results as red diamonds, with their value, on the "
                "panel of the training term of the same name</figcaption></figure>")
    return (media
            + _values("last validation", val)
            + plot
            + _values("last training step", train))


def _step_of(path: Path) -> str:
    digits = path.stem.rsplit("step", 1)[-1]
    return str(int(digits)) if digits.isdigit() else path.stem


def _earlier(run: Path, folder: Path, stems: list[str]) -> str:
    """Links to the video files of the validations before the last one."""
    if not stems:
        return ""
    items = []
    for stem in stems:
        links = " ".join(f'<a href="{_rel(run, p)}">{_esc(p.suffix[1:])}</a>' for p in _videos(folder, stem))
        items.append(f"step {_esc(_step_of(Path(stem)))}: {links}")
    return f"<p class='files'>earlier validations: {'; '.join(items)}</p>"


def _tokenizer_media(run: Path, meta: dict[str, Any]) -> str:
    """The last validation's held-out clips: each input above its reconstruction, as strips of frames."""
    from vqvdm_core.reporting import media as report_media
    from vqvdm_core.io.video import grid_cells

    folder = run / "tokenizer" / "val"
    stems = sorted({p.stem for p in folder.glob("recon_step*.*") if p.suffix in (".gif", ".mp4")})
    if not stems:
        return ""
    last = stems[-1]
    files = _links(run, _videos(folder, last), "input | reconstruction side by side, playing")
    earlier = _earlier(run, folder, stems[:-1])
    grid = folder / f"{last}.gif"
    size = _image_size(grid) if grid.is_file() else None
    if size is None:
        return files + earlier
    fallback = (_media_row(run, [(grid, "reconstructions at the last validation (left: input, right: "
                                        "reconstruction)")]) + files + earlier)
    clip_h = _clip_height(meta) or (size[0] - 2) // 2 - 2  # else square frames
    try:
        boxes = grid_cells(size[1], size[0], nrow=2, clip_height=clip_h, labelled=True)
        shown = min(RECON_CLIPS, len(boxes) // 2)
        strips, indices, length = report_media.clip_strips(
            grid, run / report_media.FOLDER / "tokenizer" / last, boxes, list(range(2 * shown)),
            frames=STRIP_FRAMES)
    except (OSError, ValueError):
        return fallback
    _, _, h, w = boxes[0]
    strip_w = len(indices) * (w + report_media.GAP) - report_media.GAP
    size = _fit(strip_w, h, 1, room=PAGE_WIDTH - 160)
    rows = []
    for i in range(shown):
        for j, name in enumerate(("input", "reconstruction")):
            head = f"clip {i + 1}: {name}" if j == 0 else name
            img = _img(run, strips[2 * i + j], size, f"clip {i + 1}, {name}")
            cls = " class='pair'" if j == 0 and i else ""
            rows.append(f"<tr{cls}><th class='cond' scope='row'>{_esc(head)}</th><td>{img}</td></tr>")
    note = (f"step {_step_of(grid)}: {shown} of {len(boxes) // 2} held-out clips, each input above its "
            f"reconstruction; frames {', '.join(str(i) for i in indices)} of {length}, left to right")
    return (f"<table class='strips'><caption>{_esc(note)}</caption><tbody>{''.join(rows)}</tbody></table>"
            + files + earlier)


def _denoiser_media(run: Path, recipe: dict[str, Any], meta: dict[str, Any]) -> str:
    """The last validation's samples, one playing clip per condition with its caption."""
    from vqvdm_core.reporting import media as report_media
    from vqvdm_core.io.video import grid_cells

    folder = run / "denoiser" / "val"
    stems = sorted({p.stem for p in folder.glob("samples_step*.*") if p.suffix in (".gif", ".mp4")})
    if not stems:
        return ""
    last = stems[-1]
    grid = folder / f"{last}.gif"
    files = _links(run, _videos(folder, last), "all of them in one file")
    earlier = _earlier(run, folder, stems[:-1])
    fallback = _media_row(run, [(grid, "samples at the last validation")]) + files + earlier
    train = recipe.get("train") if isinstance(recipe.get("train"), dict) else {}
    settings = train.get("denoiser") if isinstance(train.get("denoiser"), dict) else {}
    sample = recipe.get("sample") if isinstance(recipe.get("sample"), dict) else {}
    count = settings.get("val_clips")
    size = _image_size(grid) if grid.is_file() else None
    if not isinstance(count, int) or count < 1 or size is None:
        return fallback
    conditions = validation_conditions(meta, count, sample.get("fps"))
    if len(conditions) != count:
        return fallback
    try:
        boxes = grid_cells(size[1], size[0], nrow=min(count, 8), count=count, clip_height=_clip_height(meta),
                           labelled=True)
        gifs = report_media.clip_gifs(grid, run / report_media.FOLDER / "denoiser" / last, boxes,
                                      list(range(count)))
    except (OSError, ValueError):
        return fallback
    _, _, h, w = boxes[0]
    size = _fit(w, h, min(count, 8), limit=3)
    figures = "".join(f"<figure>{_img(run, gif, size, caption)}"
                      f"<figcaption class='cond'>{_esc(caption)}</figcaption></figure>"
                      for gif, (_, _, caption) in zip(gifs, conditions))
    note = f"step {_step_of(grid)}: {count} samples, cycling through the classes and FPS values"
    return f"<p class='settings'>{_esc(note)}</p><div class='media clips'>{figures}</div>" + files + earlier


def _check_writable(run: Path) -> None:
    from vqvdm_core.errors import UserError
    from vqvdm_core.io.paths import check_can_write
    from vqvdm_core.reporting import media as report_media

    page, folder = run / "report.html", run / report_media.FOLDER
    if page.is_dir():
        raise UserError(f"cannot write the report {page}: it is a directory; move it away")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cannot write the report's pictures to {folder}: it is not a folder; move it away")
    check_can_write(page, what="the report")


def build_report(run: Path) -> Path:
    """Write ``run/report.html`` from whatever the run has produced so far; return its path.

    Refused (:class:`~vqvdm_core.errors.UserError`) before anything is written when ``report.html``
    or ``report_files`` is in the way (a directory, a file) or the run directory is not writable."""
    run = Path(run)
    _check_writable(run)
    recipe = _read_recipe(run)
    recipe_text = (run / "recipe.yaml").read_text() if (run / "recipe.yaml").is_file() else ""
    env = _read_json(run / "environment.json") or {}
    meta = (_read_json(run / "latents" / "stage.json") or {}).get("info")  # classes, FPS values, clip shape
    meta = meta if isinstance(meta, dict) else {}
    sections = [
        f"<h1>Run <code>{_esc(run.name)}</code></h1>",
        "<h2>Overview</h2>", _overview(run, recipe),
        "<h2>Samples</h2>", _samples_section(run, recipe, meta),
        "<h2>Metrics</h2>", _metrics_section(run, recipe),
        "<h2>Tokenizer</h2>", _training_section(run, "tokenizer", _tokenizer_media(run, meta)),
        "<h2>Denoiser</h2>", _training_section(run, "denoiser", _denoiser_media(run, recipe, meta)),
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
table.samples, table.strips {{ margin: 0.3rem 0 0.6rem; }}
table.samples caption, table.strips caption {{ caption-side: top; text-align: left; font-size: 0.85rem;
  color: #555; padding-bottom: 0.3rem; }}
table.samples td, table.strips td {{ padding: 2px; border-color: #e4e4e4; }}
table.samples td figure {{ display: block; }}
th.cond {{ font-weight: 600; font-size: 0.9rem; white-space: normal; overflow-wrap: anywhere; max-width: 12rem;
  vertical-align: middle; }}
thead th.cond {{ text-align: center; }}
th.corner {{ font-size: 0.75rem; color: #777; font-weight: normal; }}
table.strips tr.pair th, table.strips tr.pair td {{ border-top: 3px solid #bbb; }}
figcaption.cond {{ overflow-wrap: anywhere; font-size: 0.8rem; color: #333; }}
.media.clips {{ gap: 0.6rem; }}
figure.curves {{ display: block; margin: 0.6rem 0 1rem; }}
figure.curves figcaption {{ display: block; }}
p.settings {{ margin: 0.2rem 0 0.5rem; }}
p.files {{ font-size: 0.85rem; margin: 0.2rem 0 1rem; }}
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
    data = page.encode()
    atomic_write(out, lambda handle: handle.write(data), needed=len(data))
    return out

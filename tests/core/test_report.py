"""The report page of a run (``vqvdm_core/reporting/report.py``): what it shows, checked against the run's files."""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from report_run import CLASS_NAMES, make_report_run

from vqvdm_core.reporting.report import build_report


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, module_standins) -> Path:
    return make_report_run(tmp_path_factory.mktemp("report"))


@pytest.fixture
def run(shared_run, tmp_path) -> Path:
    """A private copy of the run (the report writes into it)."""
    shutil.copytree(shared_run, tmp_path / "tiny")
    return tmp_path / "tiny"


class Page(HTMLParser):
    """Tables of the page as rows of cells; each cell: (tag, text, [(img attrs)])."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str, list[dict[str, str]]]]]] = {}
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self._table: str | None = None
        self._cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and a.get("class") in ("samples", "strips"):
            self._table = a["class"]
            self.tables[self._table] = []
        elif self._table and tag == "tr":
            self.tables[self._table].append([])
        elif self._table and tag in ("td", "th") and self.tables[self._table]:
            self._cell = [tag, "", [], a]
            self.tables[self._table][-1].append(self._cell)
        elif tag == "img":
            self.srcs.append(a["src"])
            if self._cell is not None:
                self._cell[2].append(a)
        elif tag == "a":
            self.hrefs.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def gif_clip(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.stack([np.asarray(f.convert("RGB"), dtype=np.float64) for f in ImageSequence.Iterator(image)])


def test_each_sample_cell_plays_the_clip_drawn_for_its_class_and_fps(run):
    from vqvdm_core.pipeline.samples_file import load_samples

    page = Page(build_report(run).read_text())
    rows = page.tables["samples"]
    head, body = rows[0], rows[1:]
    # The header names each FPS value once, over its clips; each row names its class in full.
    assert [(c[1], c[3].get("colspan")) for c in head[1:]] == [("4 fps", "2"), ("8 fps", "2"), ("16 fps", "2")]
    assert [r[0][1] for r in body] == CLASS_NAMES
    video, labels, fps = load_samples(run / "sample" / "samples.safetensors")
    clips = ((video + 1) * 127.5).round().permute(0, 2, 3, 4, 1).numpy()  # (N, T, H, W, 3)
    k = 0
    for r, row in enumerate(body):
        for col, cell in enumerate(row[1:]):
            (img,) = cell[2]
            assert int(labels[k]) == r and float(fps[k]) == [4.0, 8.0, 16.0][col // 2]
            shown = gif_clip(run / html.unescape(img["src"]))
            assert shown.shape == clips[k].shape
            errors = [np.abs(shown - clip).mean() for clip in clips]
            assert errors[k] < 3.0 and int(np.argmin(errors)) == k  # this clip (GIF colours), not a neighbour
            # Enlarged by a whole factor, never blurred.
            assert int(img["width"]) == 4 * clips[k].shape[2] and "pixel" in img.get("class", "")
            k += 1
    assert k == len(video) == 24


def test_the_sampler_is_shown_with_its_settings_steps_and_denoiser_calls(run):
    page = build_report(run).read_text()
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    calls = {r["denoiser_calls"] for r in metrics["results"]}
    assert calls == {3}  # ddim: one call per level
    sampler = "sampler <b>ddim (spacing uniform, eta 0.5)</b>, 3 steps, 3 denoiser calls per clip"
    samples, scored = page.split("<h2>Metrics</h2>")[0], page.split("<h2>Metrics</h2>")[1].split("<h2>")[0]
    assert sampler in samples and scored.count(sampler) == 2  # the grid, and each guidance scale
    assert "guidance cfg w = 2" in samples

    # A run from before samplers were recorded: the label was "default"; the recipe names none.
    for result in metrics["results"]:
        result["sampler"] = "default"
        del result["denoiser_calls"]
    (run / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    recipe = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text(re.sub(r"(\n  sampler:)\n    name: ddim\n(    \w+: .*\n)+", r"\1 null\n", recipe))
    page = build_report(run).read_text()
    assert "<b>default</b>" not in page
    assert page.count("sampler <b>ddpm (the schedule&#x27;s default)</b>, 3 steps") == 3
    assert "denoiser calls" not in page


def test_every_sample_and_reconstruction_video_file_is_linked(run):
    page = Page(build_report(run).read_text())
    videos = {p.relative_to(run).as_posix() for folder in ("sample", "tokenizer/val", "denoiser/val")
              for p in (run / folder).iterdir() if p.suffix in (".gif", ".mp4")}
    assert {"sample/grid.mp4", "tokenizer/val/recon_step0000002.mp4", "tokenizer/val/recon_step0000004.mp4"} <= videos
    hrefs = {html.unescape(h) for h in page.hrefs}
    assert videos <= hrefs
    # Every link and picture is a path inside the run directory that exists.
    for ref in hrefs | {html.unescape(s) for s in page.srcs}:
        assert not ref.startswith(("/", "file:", "http")) and (run / ref).is_file(), ref
        assert (run / ref).resolve().is_relative_to(run.resolve())


def test_reconstructions_are_large_frame_strips_of_input_above_reconstruction(run):
    from vqvdm_core import create

    page = Page(build_report(run).read_text())
    rows = page.tables["strips"]
    assert [r[0][1] for r in rows] == ["clip 1: input", "reconstruction", "clip 2: input", "reconstruction",
                                      "clip 3: input", "reconstruction"]
    val = create("dataset", "tiny_clips", num_classes=4, size=16, frames=4, num_clips=4, seed=1)
    for i in range(3):
        real = ((val[i]["video"] + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
        (img,) = rows[2 * i][1][2]
        with Image.open(run / html.unescape(img["src"])) as strip:
            pixels = np.asarray(strip.convert("RGB"), dtype=np.float64)
        assert pixels.shape == (16, 4 * 16 + 3 * 2, 3)  # the 4 frames side by side, 2 px apart
        frames = [pixels[:, t * 18:t * 18 + 16] for t in range(4)]
        assert all(np.abs(frame - real[t]).mean() < 3.0 for t, frame in enumerate(frames))
        assert int(img["width"]) == 4 * pixels.shape[1] and int(img["height"]) == 4 * 16
        (recon,) = rows[2 * i + 1][1][2]
        assert (run / html.unescape(recon["src"])).is_file() and recon["width"] == img["width"]


def test_the_denoiser_validation_samples_carry_their_conditions(run):
    from vqvdm_core.pipeline.conditions import cycle

    page = build_report(run).read_text()
    denoiser = page.split("<h2>Denoiser</h2>")[1]
    meta = json.loads((run / "latents" / "stage.json").read_text())["info"]
    expected = cycle(meta, 3, fps=[4.0, 8.0, 16.0]).captions  # as the denoiser stage drew them
    assert re.findall(r"<figcaption class='cond'>([^<]*)</figcaption>", denoiser) == expected
    assert "samples_step0000004.gif" in denoiser and "samples_step0000002.gif" in denoiser


@pytest.mark.parametrize("meta", [
    {"num_classes": 4, "class_names": ["a", "b", "c", "d"], "fps_values": [8.0]},
    {"num_classes": 3, "fps_values": [4.0, 12.5]},
    {"num_classes": 0, "fps_values": [4.0, 8.0, 16.0]},
])
def test_validation_captions_are_the_pipelines(meta):
    from vqvdm_core.pipeline.conditions import cycle
    from vqvdm_core.reporting.report import validation_conditions

    for fps in (None, [16.0, 4.0]):
        ours = validation_conditions(meta, 7, fps)
        theirs = cycle(meta, 7, fps=fps)
        assert ours == list(zip(theirs.labels, theirs.fps, theirs.captions))


def test_curves_of_an_older_layout_are_redrawn_once_and_current_ones_used_as_they_are(run):
    from vqvdm_core.reporting.plots import is_current

    assert is_current(run / "denoiser" / "loss_curves.png")  # drawn by the trainer with this version
    Image.new("RGB", (700, 900), "white").save(run / "tokenizer" / "loss_curves.png")  # an older plot
    page = build_report(run).read_text()
    redrawn = run / "report_files" / "tokenizer_curves.png"
    assert 'src="report_files/tokenizer_curves.png"' in page and is_current(redrawn)
    assert 'src="denoiser/loss_curves.png"' in page and not (run / "report_files" / "denoiser_curves.png").exists()
    before = {p: p.stat().st_mtime_ns for p in (run / "report_files").rglob("*") if p.is_file()}
    assert len(before) > 10
    build_report(run)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing drawn or cut again
    (run / "tokenizer" / "metrics.jsonl").touch()  # a longer log: the plot is drawn again
    build_report(run)
    assert redrawn.stat().st_mtime_ns > before[redrawn]


def test_a_grid_that_does_not_match_its_conditions_is_shown_whole(run):
    conditions = json.loads((run / "sample" / "conditions.json").read_text())
    conditions = {k: v[:-6] for k, v in conditions.items()}  # a row of clips fewer than the grid holds
    (run / "sample" / "conditions.json").write_text(json.dumps(conditions))
    page = build_report(run).read_text()
    assert "class='samples'" not in page
    assert re.search(r'<img src="sample/grid.gif"[^>]*class="pixel"', page)
    assert 'href="sample/grid.mp4"' in page


def test_a_run_with_only_its_recipe_still_gets_a_page(tmp_path):
    (tmp_path / "recipe.yaml").write_text("name: bare\n")
    page = build_report(tmp_path).read_text()
    assert "No samples yet." in page and "No evaluation yet." in page
    assert not (tmp_path / "report_files").exists()


def test_grid_cells_find_every_clip_of_a_grid():
    from vqvdm_core.io.video import grid_cells, video_grid

    gen = torch.Generator().manual_seed(0)
    for n, nrow, h, w, labelled in [(24, 6, 32, 32, True), (5, 3, 8, 12, False), (7, 8, 16, 16, True),
                                    (1, 4, 128, 96, True)]:
        clips = torch.rand(n, 3, 2, h, w, generator=gen) * 2 - 1
        grid = video_grid(clips, nrow=nrow, labels=[f"c{i}" for i in range(n)] if labelled else None)
        boxes = grid_cells(grid.shape[-2], grid.shape[-1], nrow=nrow, count=n, labelled=labelled)
        assert len(boxes) == n
        for k, (top, left, bh, bw) in enumerate(boxes):
            assert (bh, bw) == (h, w) and torch.equal(grid[:, :, top:top + h, left:left + w], clips[k])
        if n % nrow == 0:
            assert grid_cells(grid.shape[-2], grid.shape[-1], nrow=nrow, clip_height=h, labelled=labelled) == boxes
        assert grid_cells(grid.shape[-2], grid.shape[-1], nrow=nrow, count=n, clip_height=h,
                          labelled=labelled) == boxes
        with pytest.raises(ValueError, match="not a grid"):  # the clips are not that tall
            grid_cells(grid.shape[-2], grid.shape[-1], nrow=nrow, count=n, clip_height=h - 1, labelled=labelled)
        if n > nrow:  # (one row of clips fits any height)
            with pytest.raises(ValueError, match="not a grid"):
                grid_cells(grid.shape[-2] + 1, grid.shape[-1], nrow=nrow, count=n, labelled=labelled)


def test_pictures_are_enlarged_by_whole_factors_or_shrunk_to_fit_the_page():
    from vqvdm_core.reporting.report import PAGE_WIDTH, _fit

    assert _fit(32, 32, 6) == (128, 128, True)  # the quickstart's grid row: 4x, pixelated
    assert _fit(32, 24, 1, limit=3) == (96, 72, True)
    assert _fit(128, 128, 8) == (128, 128, False)  # as they are
    width, height, pixelated = _fit(128, 96, 16)  # the sky recipe's 16 clips a row: smaller, not cut
    assert 16 * (width + 8) <= PAGE_WIDTH and abs(height / width - 0.75) < 0.02 and not pixelated

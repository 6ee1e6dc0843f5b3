"""``benchmarks/report_screenshot.py``: rebuild a run's report and photograph it with headless Chromium;
and the report page as Chromium lays it out at 1280 px: captions whole, pictures large, videos linked.

The layout checks run only where Chromium is installed (CI installs it, see ``.ci/run``); elsewhere
they are skipped with the command that installs it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "report_screenshot.py"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.fixture
def small_run(tmp_path: Path) -> Path:
    """A run directory as left after the sample stage: recipe, stage records and a sample grid."""
    run = tmp_path / "runs" / "tiny"
    (run / "sample").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: tiny\ntokenizer: {name: vqgan3d}\ndenoiser: {name: unet3d}\n"
                                     "conditioners: []\n")
    (run / "sample" / "stage.json").write_text('{"stage": "sample", "status": "done", "info": {"count": 2}}')
    frames = [Image.fromarray(np.full((24, 40, 3), 40 * i, dtype=np.uint8)) for i in range(4)]
    frames[0].save(run / "sample" / "grid.gif", save_all=True, append_images=frames[1:], duration=100)
    return run


def run_script(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if path is not None:
        import os

        env = {**os.environ, "PATH": path}
        env.pop("CHROMIUM", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=180)


def test_missing_chromium_says_how_to_install_it(small_run, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_script(str(small_run), path=str(empty))
    assert result.returncode != 0
    assert "Chromium was not found" in result.stderr
    assert "apt-get install -y chromium" in result.stderr and "--chromium PATH" in result.stderr
    assert not (small_run / "report.png").exists()


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    result = run_script(str(tmp_path))
    assert result.returncode != 0 and "not a run directory (no recipe.yaml)" in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_screenshot_shows_the_rebuilt_report(small_run):
    (small_run / "report.html").write_text("stale")
    result = run_script(str(small_run), "--width", "800", "--height", "600")
    assert result.returncode == 0, result.stderr
    assert "<h1>Run <code>tiny</code></h1>" in (small_run / "report.html").read_text()  # rebuilt
    with Image.open(small_run / "report.png") as png:
        assert png.size == (800, 600)
        pixels = np.asarray(png.convert("L"))
    # A rendered page: mostly white background, with dark text and the (grey) sample grid.
    assert (pixels > 240).mean() > 0.5 and (pixels < 80).sum() > 100


# --------------------------------------------------------------------------------------------
# The page as Chromium lays it out
# --------------------------------------------------------------------------------------------

# Measures the laid-out page once everything has loaded and appends the numbers to the document as
# JSON, which --dump-dom then prints. A caption is whole when its content needs no more room than
# its box has (scrollWidth/Height <= clientWidth/Height: nothing cut or hidden by overflow) and the
# rendered text (a Range around it) lies inside the caption's box and inside the window.
PROBE = """<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth;
  const out = {view, page: document.documentElement.scrollWidth, captions: [], images: [], links: []};
  for (const el of document.querySelectorAll(".cond")) {
    const box = el.getBoundingClientRect();
    const range = document.createRange();
    range.selectNodeContents(el);
    const text = range.getBoundingClientRect();
    out.captions.push({text: el.textContent, scrollWidth: el.scrollWidth, clientWidth: el.clientWidth,
      scrollHeight: el.scrollHeight, clientHeight: el.clientHeight, left: box.left, right: box.right,
      textLeft: text.left, textRight: text.right, textWidth: text.width});
  }
  for (const img of document.images) {
    const box = img.getBoundingClientRect();
    out.images.push({src: img.getAttribute("src"), width: box.width, height: box.height,
      natural: img.naturalWidth, complete: img.complete});
  }
  for (const a of document.links) out.links.push(a.getAttribute("href"));
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

# Pretends captions are cut the way the sample grid's pixel captions were: the probe must see it.
CUT_CAPTIONS = ("<style>.cond { display: block !important; width: 30px !important; white-space: nowrap !important; "
                "overflow: hidden !important; }</style>")


def measure(report: Path, extra: str = "", width: int = 1280) -> dict:
    """Lay ``report`` out in headless Chromium at ``width`` CSS pixels (with ``extra`` HTML added to
    a copy beside it, so its relative links still resolve); the probe's numbers."""
    probe = report.with_name("report_probe.html")
    probe.write_text(report.read_text().replace("</body>", extra + PROBE + "</body>"))
    with tempfile.TemporaryDirectory(prefix="vqvdm-chromium-") as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={width},2000", "--virtual-time-budget=5000",
             "--dump-dom", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no measurements in Chromium's DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(found[1]))


def cut(caption: dict) -> bool:
    return (caption["scrollWidth"] > caption["clientWidth"] or caption["scrollHeight"] > caption["clientHeight"]
            or caption["textLeft"] < caption["left"] - 1 or caption["textRight"] > caption["right"] + 1)


@pytest.fixture(scope="module")
def laid_out_run(tmp_path_factory, module_standins) -> Path:
    """A tiny run laid out as the quickstart's (4 classes x 3 FPS x 2 clips of 32x32), its report built."""
    from report_run import make_report_run

    from vqvdm_core.reporting.report import build_report

    run = make_report_run(tmp_path_factory.mktemp("laid-out"), size=32)
    build_report(run)
    return run


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_at_1280_px_captions_are_whole_pictures_large_and_videos_linked(laid_out_run):
    from report_run import CLASS_NAMES

    m = measure(laid_out_run / "report.html")
    assert 1250 <= m["view"] <= 1280 and m["page"] <= m["view"]  # (a scroll bar), nothing sticks out sideways
    captions = m["captions"]
    texts = [c["text"] for c in captions]
    # Each class and FPS value of the sample table, each strip of the tokenizer, each validation clip.
    assert set(CLASS_NAMES) | {"4 fps", "8 fps", "16 fps", "clip 1: input", "reconstruction"} <= set(texts)
    assert sum(t.endswith(" fps") and t not in ("4 fps", "8 fps", "16 fps") for t in texts) == 3
    for caption in captions:
        assert caption["textWidth"] > 0 and not cut(caption), caption
        assert caption["textRight"] <= m["view"], caption
    images = m["images"]
    assert all(i["complete"] and i["natural"] > 0 for i in images), images  # every picture found
    cells = [i for i in images if i["src"].startswith("report_files/sample/")]
    assert len(cells) == 24 and all(i["width"] >= 96 and i["height"] >= 96 for i in cells)  # 32 px clips x3+
    strips = [i for i in images if i["src"].startswith("report_files/tokenizer/")]
    assert len(strips) == 6 and all(i["width"] >= 500 for i in strips)  # 4 frames of 32 px, enlarged
    curves = [i for i in images if "curves" in i["src"]]
    assert len(curves) == 2 and all(i["width"] >= 900 for i in curves)
    videos = [h for h in m["links"] if h.endswith(".mp4")]
    assert "sample/grid.mp4" in videos and "tokenizer/val/recon_step0000004.mp4" in videos
    assert all((laid_out_run / h).is_file() for h in m["links"])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_the_caption_check_sees_captions_that_are_cut(laid_out_run):
    m = measure(laid_out_run / "report.html", extra=CUT_CAPTIONS)
    long_ones = [c for c in m["captions"] if len(c["text"]) > 4]
    assert long_ones and all(cut(c) for c in long_ones)

"""``benchmarks/report_screenshot.py``: rebuild a run's report and photograph it with headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
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

"""Rebuild a run's ``report.html`` and take a screenshot of it with headless Chromium.

::

    .venv/bin/python benchmarks/report_screenshot.py runs/quickstart
    .venv/bin/python benchmarks/report_screenshot.py runs/quickstart --out report.png --height 3200

The page is rebuilt first (as ``vqvdm report RUN`` does), then rendered by Chromium in headless mode
with no network, no GPU and a throw-away profile; the PNG (default ``<run>/report.png``) shows what a
person opening the report sees, for checking the page's layout without a desktop. Chromium shows
the first frame of animated GIFs and the poster (or nothing) of MP4 videos.

Needs Chromium: on Debian/Ubuntu ``apt-get install -y chromium`` (or ``chromium-browser``); any
Chrome/Chromium binary works with ``--chromium PATH`` or ``$CHROMIUM``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "Chromium was not found. Install it, e.g. on Debian/Ubuntu:\n"
    "    apt-get update && apt-get install -y chromium\n"
    "or point to any Chrome/Chromium binary with --chromium PATH (or the CHROMIUM environment variable)."
)


def find_chromium(explicit: str | None) -> str:
    """The Chromium executable to use; exits with install instructions when there is none."""
    for name in ([explicit] if explicit else []) + ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []):
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
        sys.exit(f"error: {name} is not an executable.\n{INSTALL_HINT}")
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    sys.exit(f"error: {INSTALL_HINT}")


def screenshot(report: Path, png: Path, *, chromium: str, width: int, height: int,
               timeout: float) -> None:
    """Render ``report`` (an HTML file) into ``png`` at ``width`` x ``height`` CSS pixels."""
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()  # so a stale file is never mistaken for the new one
    with tempfile.TemporaryDirectory(prefix="vqvdm-chromium-") as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
            "--hide-scrollbars", report.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"error: Chromium did not finish within {timeout:.0f}s: {' '.join(cmd)}")
    if result.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        sys.exit(f"error: Chromium failed (exit {result.returncode}) to write {png}:\n{result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (holding recipe.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: <run>/report.png)")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--height", type=int, default=2400, help="window height (the page is cut there)")
    parser.add_argument("--chromium", default=None, help="Chromium/Chrome executable (default: search PATH)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Chromium")
    args = parser.parse_args(argv)

    if not (args.run / "recipe.yaml").is_file():
        sys.exit(f"error: {args.run} is not a run directory (no recipe.yaml)")
    chromium = find_chromium(args.chromium)  # before any work, so a missing browser fails fast

    from vqvdm_core.reporting.report import build_report

    report = build_report(args.run)
    png = args.out or args.run / "report.png"
    screenshot(report, png, chromium=chromium, width=args.width, height=args.height, timeout=args.timeout)
    print(f"report: {report}\nscreenshot: {png} ({args.width}x{args.height})")


if __name__ == "__main__":
    main()

"""Render a run's report.html in headless Chromium and save a screenshot (checks that it opens offline).

    apt-get install -y chromium          # Debian/Ubuntu; any Chromium or Chrome binary works
    python benchmarks/screenshot_report.py runs/quickstart-20250101-120000 [--out report.png]

The page is opened from the file system with the network switched off; the screenshot shows what a
person sees. Exit status 0 when the screenshot was written and is not blank.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def screenshot(report: Path, out: Path, width: int = 1400, height: int = 2400, timeout: float = 120) -> Path:
    """Save a PNG of ``report`` as headless Chromium renders it; raises RuntimeError on failure."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError(
            f"no Chromium found (looked for {', '.join(CANDIDATES)}); apt-get install chromium"
        )
    with tempfile.TemporaryDirectory(prefix="ganforge-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",  # running as root in containers
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--proxy-server=127.0.0.1:9",  # no network: the page must be self-contained
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            report.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(
            f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return out


def is_blank(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        colors = image.convert("RGB").resize((200, 340)).getcolors(maxcolors=1 << 16)
    return colors is not None and len(colors) < 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="run directory (or the report.html itself)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN_DIR/report.png)")
    args = parser.parse_args(argv)
    report = args.run_dir if args.run_dir.suffix == ".html" else args.run_dir / "report.html"
    if not report.is_file():
        print(f"error: {report} not found", file=sys.stderr)
        return 2
    out = args.out or report.with_name("report.png")
    try:
        screenshot(report, out)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if is_blank(out):
        print(f"error: {out} is blank", file=sys.stderr)
        return 1
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
